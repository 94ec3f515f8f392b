"""The public recipes in ``cloister.crypto.files``: one behaviour across schemas, plaintext only after all checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloister.crypto.files import RAW_OUTPUT_ERROR, decrypt_file, encrypt_file, read_cmac, verify_file
from cloister.errors import FileIntegrityError
from cloister.model.files import FileCrypto

SCHEMAS = [
    FileCrypto("aes-gcm-128", bytes(16), bytes(12)),
    FileCrypto("aes-gcm-256", bytes(32), bytes(12)),
    FileCrypto("teaclave-file-128", bytes(16)),
]
IDS = [crypto.schema for crypto in SCHEMAS]


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.txt"
    path.write_bytes(os.urandom(20_000))
    return path


@pytest.mark.parametrize("crypto", SCHEMAS, ids=IDS)
def test_verify_file_checks_without_writing(crypto: FileCrypto, plain: Path, tmp_path: Path) -> None:
    sealed = tmp_path / "sealed.bin"
    cmac = encrypt_file(crypto, plain, sealed)
    before = set(tmp_path.iterdir())
    assert verify_file(crypto, sealed, expected_cmac=cmac) == cmac == read_cmac(crypto, sealed)
    assert set(tmp_path.iterdir()) == before
    with pytest.raises(FileIntegrityError, match="registered"):
        verify_file(crypto, sealed, expected_cmac=bytes(16))
    data = bytearray(sealed.read_bytes())
    data[-5000] ^= 1
    sealed.write_bytes(bytes(data))
    with pytest.raises(FileIntegrityError):
        verify_file(crypto, sealed)


@pytest.mark.parametrize("crypto", SCHEMAS, ids=IDS)
def test_existing_destination_is_replaced_on_success(crypto: FileCrypto, plain: Path, tmp_path: Path) -> None:
    sealed, opened = tmp_path / "sealed.bin", tmp_path / "opened.txt"
    sealed.write_bytes(b"old")
    opened.write_bytes(b"old")
    encrypt_file(crypto, plain, sealed)
    decrypt_file(crypto, sealed, opened)
    assert opened.read_bytes() == plain.read_bytes()


@pytest.mark.parametrize("crypto", SCHEMAS, ids=IDS)
def test_source_and_destination_must_differ(crypto: FileCrypto, plain: Path) -> None:
    content = plain.read_bytes()
    with pytest.raises(ValueError, match="different files"):
        encrypt_file(crypto, plain, plain)
    with pytest.raises(ValueError, match="different files"):
        decrypt_file(crypto, plain, plain)
    assert plain.read_bytes() == content


def test_missing_source_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        decrypt_file(SCHEMAS[0], tmp_path / "absent", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_teaclave_names_default_to_the_paths(plain: Path, tmp_path: Path) -> None:
    crypto = SCHEMAS[2]
    encrypt_file(crypto, plain, tmp_path / "upload.enc")
    decrypt_file(crypto, tmp_path / "upload.enc", tmp_path / "a")  # the source's own name
    (tmp_path / "upload.enc").rename(tmp_path / "moved.enc")
    with pytest.raises(FileIntegrityError, match=r"'upload\.enc'"):
        decrypt_file(crypto, tmp_path / "moved.enc", tmp_path / "b")
    decrypt_file(crypto, tmp_path / "moved.enc", tmp_path / "b", name="upload.enc")
    assert (tmp_path / "b").read_bytes() == plain.read_bytes()


def test_raw_inputs_are_copied(plain: Path, tmp_path: Path) -> None:
    raw = FileCrypto("raw")
    seen: list[int] = []
    assert decrypt_file(raw, plain, tmp_path / "copy", expected_cmac=bytes(16), progress=seen.append) == b""
    assert (tmp_path / "copy").read_bytes() == plain.read_bytes()
    assert (tmp_path / "copy").stat().st_mode & 0o777 == 0o600
    assert seen[-1] == 20_000
    assert read_cmac(raw, plain) == b"" == verify_file(raw, plain)


def test_raw_outputs_fail_like_teaclave(plain: Path, tmp_path: Path) -> None:
    with pytest.raises(FileIntegrityError) as caught:
        encrypt_file(FileCrypto("raw"), plain, tmp_path / "out")
    assert caught.value.message == RAW_OUTPUT_ERROR == "OutputFile: unsupported type"
    assert not (tmp_path / "out").exists()


def test_unknown_schema(plain: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown crypto schema"):
        encrypt_file(FileCrypto("rot13"), plain, tmp_path / "out")


def test_destination_directory_is_refused(plain: Path, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        encrypt_file(SCHEMAS[0], plain, tmp_path / "dir")
    assert (tmp_path / "dir").is_dir()
