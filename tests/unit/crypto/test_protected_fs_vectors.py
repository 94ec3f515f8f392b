"""Known answers for Teaclave's file formats: every fixture Teaclave wrote opens to its plaintext twin (§7.3, §7.4)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from shared_fixtures import FIXTURE_CMACS, TEACLAVE_FIXTURES

from cloister.crypto.files import decrypt_file, encrypt_file, read_cmac
from cloister.model.files import FileCrypto

FUNCTIONS = TEACLAVE_FIXTURES / "functions"
ZERO_KEY = FileCrypto("teaclave-file-128", bytes(16))

CMACS = FIXTURE_CMACS
ENCRYPTED = sorted(path.relative_to(FUNCTIONS).as_posix() for path in FUNCTIONS.rglob("*.enc"))


def _twin(encrypted: Path) -> Path:
    """The plaintext beside a fixture: ``x.txt.enc`` -> ``x.txt``, ``train.enc`` -> ``train.txt``, rsakey -> key.der."""
    if encrypted.name == "rsakey.enc":
        return encrypted.with_name("key.der")
    for candidate in (encrypted.with_suffix(""), encrypted.with_suffix(".txt")):
        if candidate.is_file():
            return candidate
    raise AssertionError(f"no plaintext twin for {encrypted}")


def test_the_table_covers_every_fixture() -> None:
    assert sorted(CMACS) == ENCRYPTED


@pytest.mark.parametrize("relative", ENCRYPTED)
def test_teaclave_file_128_fixture_opens_to_its_twin(relative: str, tmp_path: Path) -> None:
    source = FUNCTIONS / relative
    out = tmp_path / "plain"
    cmac = decrypt_file(ZERO_KEY, source, out, expected_cmac=bytes.fromhex(CMACS[relative]))
    assert cmac.hex() == CMACS[relative]
    assert read_cmac(ZERO_KEY, source).hex() == CMACS[relative]
    assert out.read_bytes() == _twin(source).read_bytes()


def test_multi_node_fixture_has_the_documented_layout() -> None:
    data = (FUNCTIONS / "py_logistic_reg/train.enc").read_bytes()
    assert data[:8] == b"ELIF_XGS"
    assert len(data) == 9 * 4096  # metadata, root MHT, 7 data nodes for 27929 - 3072 bytes


def test_aes_gcm_128_fixture(tmp_path: Path) -> None:
    crypto = FileCrypto("aes-gcm-128", bytes(16), bytes([1] * 12))
    source = FUNCTIONS / "gbdt_training/train.aes_gcm_128"
    tag = bytes.fromhex("592f1e607649d89ff2aa8a2841a57cad")
    assert read_cmac(crypto, source) == tag
    assert decrypt_file(crypto, source, tmp_path / "train.txt", expected_cmac=tag) == tag
    assert (tmp_path / "train.txt").read_bytes() == (FUNCTIONS / "gbdt_training/train.txt").read_bytes()
    assert encrypt_file(crypto, FUNCTIONS / "gbdt_training/train.txt", tmp_path / "again") == tag
    assert (tmp_path / "again").read_bytes() == source.read_bytes()


def test_password_check_data_url_example(tmp_path: Path) -> None:
    source = tmp_path / "password.aes"
    source.write_bytes(base64.b64decode("c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9"))
    crypto = FileCrypto("aes-gcm-128", bytes(16), bytes(12))
    tag = decrypt_file(crypto, source, tmp_path / "password")
    assert tag.hex() == "e84748f7ad380e183062b9b4b3942b7d"
    assert (tmp_path / "password").read_bytes() == b"password"


@pytest.mark.parametrize(
    ("name", "schema", "key", "iv", "tag"),
    [
        (
            "input1.txt",
            "aes-gcm-128",
            bytes(15) + b"\x01",
            "123456781234567812345678",
            "e8afd048b339fc835733e16c761a301c",
        ),
        (
            "input2.txt",
            "aes-gcm-256",
            bytes(31) + b"\x02",
            "012345670123456701234567",
            "75d7cf7a7843dee709e29ba0dcb865d2",
        ),
    ],
)
def test_fusion_fixtures_encrypt_to_the_known_tags(
    name: str, schema: str, key: bytes, iv: str, tag: str, tmp_path: Path
) -> None:
    plaintext = TEACLAVE_FIXTURES / "fusion" / name
    crypto = FileCrypto(schema, key, bytes.fromhex(iv))
    assert encrypt_file(crypto, plaintext, tmp_path / "sealed").hex() == tag
    decrypt_file(crypto, tmp_path / "sealed", tmp_path / "opened", expected_cmac=bytes.fromhex(tag))
    assert (tmp_path / "opened").read_bytes() == plaintext.read_bytes()
