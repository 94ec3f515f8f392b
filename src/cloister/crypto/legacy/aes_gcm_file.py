"""Teaclave's whole-file AES-GCM (reference §7.3): ciphertext ‖ 16-byte tag, caller's IV, AAD = 8 zero bytes.

The IV comes from the file's registration, so every output written under one registration reuses the
nonce; that is Teaclave's design, kept for compatibility. Both directions stream in fixed-size chunks.
"""

from __future__ import annotations

import hmac
import os
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cloister.crypto.legacy import Progress
from cloister.errors import FileIntegrityError

TAG_LENGTH = 16
AAD = bytes(8)
CHUNK = 1 << 20
_BLOCK_SLACK = 15  # update_into wants room for one block beyond the input


def _label(key: bytes) -> str:
    return "AesGcm256" if len(key) == 32 else "AesGcm128"


def encrypt(
    key: bytes,
    iv: bytes,
    source: BinaryIO,
    destination: BinaryIO,
    *,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> bytes:
    """Encrypt everything left in ``source`` into ``destination``, then append the tag; returns the tag."""
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(AAD)
    inbuf = bytearray(chunk)
    in_view = memoryview(inbuf)
    out_view = memoryview(bytearray(chunk + _BLOCK_SLACK))
    done = 0
    while n := source.readinto(in_view):
        written = encryptor.update_into(in_view[:n], out_view)
        destination.write(out_view[:written])
        done += n
        if progress is not None:
            progress(done)
    encryptor.finalize()
    tag = encryptor.tag
    destination.write(tag)
    return tag


def read_tag(source: BinaryIO) -> bytes:
    """The tag stored in the last 16 bytes (the file's cmac); raises if the file is too short to hold data."""
    length = source.seek(0, os.SEEK_END)
    if length <= TAG_LENGTH:
        raise FileIntegrityError(f"AES-GCM file, invalid length: {length} bytes is too short to hold data and a tag")
    source.seek(length - TAG_LENGTH)
    tag = source.read(TAG_LENGTH)
    if len(tag) != TAG_LENGTH:
        raise FileIntegrityError("AES-GCM file, invalid length: the file shrank while it was read")
    return tag


def decrypt(
    key: bytes,
    iv: bytes,
    source: BinaryIO,
    destination: BinaryIO | None,
    *,
    expected_tag: bytes | None = None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> bytes:
    """Decrypt ``source`` (seekable) into ``destination`` (``None``: verify only); returns the tag.

    The tag is compared with ``expected_tag`` before any plaintext is produced. Plaintext written before
    the final tag check is unauthenticated: the caller must discard ``destination`` when this raises.
    """
    label = _label(key)
    length = source.seek(0, os.SEEK_END)
    if length <= TAG_LENGTH:
        raise FileIntegrityError(f"{label} File, invalid length: {length} bytes is too short to hold data and a tag")
    tag = read_tag(source)
    if expected_tag is not None and not hmac.compare_digest(tag, expected_tag):
        raise FileIntegrityError(f"{label} File, invalid tag: the file's cmac does not match the registered one")
    source.seek(0)
    decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, tag)).decryptor()
    decryptor.authenticate_additional_data(AAD)
    remaining = length - TAG_LENGTH
    in_view = memoryview(bytearray(min(chunk, remaining)))
    out_view = memoryview(bytearray(len(in_view) + _BLOCK_SLACK))
    done = 0
    while done < remaining:
        n = source.readinto(in_view[: min(len(in_view), remaining - done)])
        if not n:
            raise FileIntegrityError(f"{label} File, invalid length: the file shrank while it was read")
        written = decryptor.update_into(in_view[:n], out_view)
        if destination is not None:
            destination.write(out_view[:written])
        done += n
        if progress is not None:
            progress(done)
    try:
        decryptor.finalize()
    except InvalidTag:
        raise FileIntegrityError(
            f"{label} File: the authentication tag does not verify (tampered file or wrong key)"
        ) from None
    return tag
