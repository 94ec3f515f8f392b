"""Teaclave's whole-file AES-GCM: ciphertext ‖ tag with 8 zero bytes of AAD, streamed, checked before release."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloister.crypto.files import decrypt_file, encrypt_file, read_cmac
from cloister.crypto.legacy import aes_gcm_file
from cloister.errors import FileIntegrityError
from cloister.model.files import FileCrypto

AES128 = FileCrypto("aes-gcm-128", bytes(range(16)), bytes(range(12)))
AES256 = FileCrypto("aes-gcm-256", bytes(range(32)), bytes(range(12)))


@pytest.mark.parametrize("size", [1, 15, 16, 17, 100, 1000, 4096])
@pytest.mark.parametrize("chunk", [1, 16, 64, 1 << 20])
def test_streaming_matches_one_shot_aead(size: int, chunk: int) -> None:
    """Any chunking gives exactly AESGCM(key).encrypt(iv, data, aad=8 zero bytes)."""
    plaintext = os.urandom(size)
    sealed = io.BytesIO()
    tag = aes_gcm_file.encrypt(AES128.key, AES128.iv, io.BytesIO(plaintext), sealed, chunk=chunk)
    assert sealed.getvalue() == AESGCM(AES128.key).encrypt(AES128.iv, plaintext, bytes(8))
    assert tag == sealed.getvalue()[-16:]
    opened = io.BytesIO()
    assert aes_gcm_file.decrypt(AES128.key, AES128.iv, sealed, opened, expected_tag=tag, chunk=chunk) == tag
    assert opened.getvalue() == plaintext


@pytest.mark.parametrize("crypto", [AES128, AES256], ids=["128", "256"])
@pytest.mark.parametrize("size", [1, 3000, (1 << 20) + 1, 3 << 20])
def test_file_round_trip(crypto: FileCrypto, size: int, tmp_path: Path) -> None:
    plaintext = os.urandom(size)
    (tmp_path / "plain").write_bytes(plaintext)
    seen: list[int] = []
    cmac = encrypt_file(crypto, tmp_path / "plain", tmp_path / "sealed", progress=seen.append)
    assert seen[-1] == size and seen == sorted(seen)
    assert (tmp_path / "sealed").stat().st_size == size + 16
    assert (tmp_path / "sealed").stat().st_mode & 0o777 == 0o600
    assert read_cmac(crypto, tmp_path / "sealed") == cmac
    assert decrypt_file(crypto, tmp_path / "sealed", tmp_path / "opened", expected_cmac=cmac) == cmac
    assert (tmp_path / "opened").read_bytes() == plaintext
    assert (tmp_path / "opened").stat().st_mode & 0o777 == 0o600


def _sealed(tmp_path: Path, size: int = 5000) -> tuple[Path, bytes]:
    (tmp_path / "plain").write_bytes(os.urandom(size))
    return tmp_path / "sealed", encrypt_file(AES128, tmp_path / "plain", tmp_path / "sealed")


def _assert_refused(tmp_path: Path, source: Path, reason: str, crypto: FileCrypto = AES128, **kwargs: bytes) -> None:
    out = tmp_path / "opened"
    out.write_bytes(b"stale")  # even an older file at the destination must not survive a failed decryption
    with pytest.raises(FileIntegrityError, match=reason):
        decrypt_file(crypto, source, out, **kwargs)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("offset", [0, 2500, 4999, 5000, 5015])
def test_tampering_is_caught(offset: int, tmp_path: Path) -> None:
    sealed, _ = _sealed(tmp_path)
    data = bytearray(sealed.read_bytes())
    data[offset] ^= 0x80
    sealed.write_bytes(bytes(data))
    _assert_refused(tmp_path, sealed, "authentication tag does not verify")


def test_wrong_key_or_iv(tmp_path: Path) -> None:
    sealed, _ = _sealed(tmp_path)
    _assert_refused(tmp_path, sealed, "tampered file or wrong key", FileCrypto("aes-gcm-128", bytes(16), AES128.iv))
    _assert_refused(tmp_path, sealed, "tampered file or wrong key", FileCrypto("aes-gcm-128", AES128.key, bytes(12)))


def test_truncation(tmp_path: Path) -> None:
    sealed, _ = _sealed(tmp_path)
    data = sealed.read_bytes()
    sealed.write_bytes(data[:-1])
    _assert_refused(tmp_path, sealed, "authentication tag does not verify")
    for length in (0, 16):
        sealed.write_bytes(data[:length])
        _assert_refused(tmp_path, sealed, "AesGcm128 File, invalid length")
        with pytest.raises(FileIntegrityError, match="invalid length"):
            read_cmac(AES128, sealed)


def test_registered_cmac_is_compared_before_decrypting(tmp_path: Path) -> None:
    sealed, cmac = _sealed(tmp_path)
    seen: list[int] = []
    _assert_refused(tmp_path, sealed, "AesGcm128 File, invalid tag", expected_cmac=bytes(16))
    with pytest.raises(FileIntegrityError, match="does not match the registered one"):
        decrypt_file(AES128, sealed, tmp_path / "opened", expected_cmac=cmac[::-1], progress=seen.append)
    assert seen == []
    _assert_refused(
        tmp_path,
        sealed,
        "AesGcm256 File, invalid tag",
        FileCrypto("aes-gcm-256", bytes(32), bytes(12)),
        expected_cmac=b"x",
    )


def test_empty_plaintext_cannot_be_read_back(tmp_path: Path) -> None:
    """Teaclave requires more than 16 bytes to read a file, so an empty output is a tag alone and refused."""
    (tmp_path / "empty").write_bytes(b"")
    cmac = encrypt_file(AES128, tmp_path / "empty", tmp_path / "sealed")
    assert (tmp_path / "sealed").read_bytes() == cmac
    _assert_refused(tmp_path, tmp_path / "sealed", "invalid length")
