"""File crypto recipes: encrypt, decrypt, verify and read the cmac of a file under its ``FileCrypto``, streamed.

Plaintext is written to a private temporary file beside ``destination`` and renamed into place only after
every integrity check passed, so a failed decryption never leaves plaintext behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cloister.crypto.legacy import Progress, aes_gcm_file, protected_fs
from cloister.errors import FileIntegrityError
from cloister.model.files import FileCrypto

CHUNK = aes_gcm_file.CHUNK
AES_GCM_SCHEMAS = frozenset({"aes-gcm-128", "aes-gcm-256"})
PROTECTED_SCHEMA = "teaclave-file-128"
RAW_OUTPUT_ERROR = "OutputFile: unsupported type"


@contextlib.contextmanager
def _private_output(destination: Path) -> Iterator[BinaryIO]:
    """A 0600 file that becomes ``destination`` on success; on any error neither it nor ``destination`` remains."""
    if destination.exists() and destination.is_dir():
        raise IsADirectoryError(f"{destination} is a directory")
    temporary = destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.partial")
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w+b") as out:
            yield out
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        destination.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _open_source(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with source.open("rb") as stream:
            yield stream
    else:
        yield source


def _check_paths(source: Path, destination: Path) -> None:
    if destination.exists() and source.exists() and os.path.samefile(source, destination):
        raise ValueError("source and destination must be different files")


def _schema(crypto: FileCrypto) -> str:
    if crypto.schema not in AES_GCM_SCHEMAS | {PROTECTED_SCHEMA, "raw"}:
        raise ValueError(f"unknown crypto schema {crypto.schema!r}")
    return crypto.schema


def _copy(source: BinaryIO, destination: BinaryIO | None, progress: Progress | None) -> None:
    buffer = memoryview(bytearray(CHUNK))
    done = 0
    while n := source.readinto(buffer):
        if destination is not None:
            destination.write(buffer[:n])
        done += n
        if progress is not None:
            progress(done)


def _decrypt(
    crypto: FileCrypto,
    source: Path,
    out: BinaryIO | None,
    name: str | None,
    expected_cmac: bytes | None,
    progress: Progress | None,
) -> bytes:
    schema = _schema(crypto)
    with source.open("rb") as src:
        if schema in AES_GCM_SCHEMAS:
            return aes_gcm_file.decrypt(crypto.key, crypto.iv, src, out, expected_tag=expected_cmac, progress=progress)
        if schema == PROTECTED_SCHEMA:
            return protected_fs.read(
                crypto.key,
                src,
                out,
                name=name if name is not None else source.name,
                expected_cmac=expected_cmac,
                progress=progress,
            )
        _copy(src, out, progress)
        return b""


def decrypt_file(
    crypto: FileCrypto,
    source: Path,
    destination: Path,
    *,
    name: str | None = None,
    expected_cmac: bytes | None = None,
    progress: Progress | None = None,
) -> bytes:
    """Decrypt ``source`` into ``destination`` (created with mode 0600), verifying integrity; returns the cmac.

    Args:
        crypto: the file's registered crypto info.
        source: the encrypted file.
        destination: where the plaintext goes; replaced only on success, absent after any failure.
        name: for ``teaclave-file-128``, the name the file was created with (default ``source.name``).
        expected_cmac: the registered cmac, checked before any plaintext is produced (not for ``raw``).
        progress: called with the number of plaintext bytes processed so far.

    Raises:
        FileIntegrityError: truncated or tampered file, wrong key, cmac or (``teaclave-file-128``) name mismatch.
    """
    _schema(crypto)
    _check_paths(source, destination)
    with _private_output(destination) as out:
        return _decrypt(crypto, source, out, name, expected_cmac, progress)


def verify_file(
    crypto: FileCrypto,
    source: Path,
    *,
    name: str | None = None,
    expected_cmac: bytes | None = None,
    progress: Progress | None = None,
) -> bytes:
    """Run every check ``decrypt_file`` runs without keeping any plaintext; returns the cmac."""
    return _decrypt(crypto, source, None, name, expected_cmac, progress)


def encrypt_file(
    crypto: FileCrypto,
    source: Path | BinaryIO,
    destination: Path,
    *,
    name: str | None = None,
    progress: Progress | None = None,
) -> bytes:
    """Encrypt the plaintext ``source`` (a file, or a binary stream read to its end) into
    ``destination`` (mode 0600); returns the new file's cmac.

    For ``aes-gcm-*`` the cmac is the GCM tag (the file's last 16 bytes), for ``teaclave-file-128`` the
    metadata gmac; a ``teaclave-file-128`` file is bound to ``name`` (default ``destination.name``), the
    name it must keep to be opened, as Teaclave binds outputs to their URL's basename.

    Raises:
        FileIntegrityError: ``raw`` was asked for (Teaclave's ``OutputFile: unsupported type``).
        ValueError: ``name`` is not a usable protected-file name.
    """
    schema = _schema(crypto)
    if schema == "raw":
        raise FileIntegrityError(RAW_OUTPUT_ERROR)
    internal_name = name if name is not None else destination.name
    if schema == PROTECTED_SCHEMA:
        protected_fs.check_name(internal_name)  # fail before creating anything
    if isinstance(source, Path):
        _check_paths(source, destination)
    with _open_source(source) as src, _private_output(destination) as out:
        if schema == PROTECTED_SCHEMA:
            return protected_fs.write(crypto.key, src, out, name=internal_name, progress=progress)
        return aes_gcm_file.encrypt(crypto.key, crypto.iv, src, out, progress=progress)


def read_cmac(crypto: FileCrypto, path: Path) -> bytes:
    """The cmac as stored in the file (no key needed): the GCM tag or the protected file's metadata gmac.

    ``raw`` files have none: returns ``b""``.
    """
    schema = _schema(crypto)
    if schema == "raw":
        return b""
    with path.open("rb") as src:
        if schema == PROTECTED_SCHEMA:
            return protected_fs.read_cmac(src)
        return aes_gcm_file.read_tag(src)
