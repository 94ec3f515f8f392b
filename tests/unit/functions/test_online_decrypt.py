"""``builtin_online_decrypt`` on the reference's test vectors and every failure it names."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from memory_runtime import MemoryRuntime

from cloister.functions import FunctionError, builtin_functions

NAME = "builtin_online_decrypt"
NONCE = "AAECAwQFBgcICQoL"
KEY_256 = "aqUdgZ0lJnuz9yiPkoDxM6ZcTcVVpd4KKLqzbHD88Lg="
DATA_256 = "CaZd8qSMMlBp8SjSXj2I4dQIuC9KkZ5DI/ATo1sWJw=="
KEY_128 = "aqUdgZ0lJnuz9yiPkoDxMw=="
DATA_128 = "OqMscYqxk1CshHQZulTrrDlJjS/v6BE/clWJyTerUw=="
VECTOR_256 = {"key": KEY_256, "nonce": NONCE, "encrypted_data": DATA_256, "algorithm": "aes256gcm"}
VECTOR_128 = {"key": KEY_128, "nonce": NONCE, "encrypted_data": DATA_128, "algorithm": "aes128gcm"}


def decrypt(arguments: dict) -> str:
    return builtin_functions()[NAME].run(arguments, MemoryRuntime())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("arguments", [VECTOR_256, VECTOR_128])
def test_reference_vectors(arguments: dict) -> None:
    assert decrypt(arguments) == "Hello Teaclave!"


def test_only_the_first_twelve_nonce_bytes_count_and_padding_may_be_left_out() -> None:
    longer = b64(base64.b64decode(NONCE) + b"ignored")
    assert decrypt({**VECTOR_256, "nonce": longer, "save_log": True}) == "Hello Teaclave!"
    unpadded = {**VECTOR_128, "key": KEY_128.rstrip("="), "encrypted_data": DATA_128.rstrip("=")}
    assert decrypt(unpadded) == "Hello Teaclave!"


def test_name_has_underscores() -> None:
    assert "builtin-online-decrypt" not in builtin_functions()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"algorithm": "aes192gcm"}, "Invalid algorithm"),
        ({"algorithm": "AES256GCM"}, "Invalid algorithm"),
        ({"algorithm": None}, "Cannot deserialize arguments"),
        ({"key": 5}, "Cannot deserialize arguments"),
        ({"key": "not base64!"}, "base64 decoded error"),
        ({"nonce": "AAEC AwQF"}, "base64 decoded error"),
        ({"encrypted_data": "é"}, "base64 decoded error"),
        ({"key": KEY_128}, "decryption error"),  # a 128-bit key for aes256gcm
        ({"algorithm": "aes128gcm"}, "decryption error"),  # and the reverse
        ({"nonce": b64(bytes(11))}, "decryption error"),
        ({"nonce": b64(bytes(12))}, "decryption error"),
        ({"encrypted_data": DATA_256[:-8] + "AAAAAA=="}, "decryption error"),
        ({"encrypted_data": b64(bytes(15))}, "decryption error"),
    ],
)
def test_errors(change: dict, reason: str) -> None:
    arguments = {key: value for key, value in {**VECTOR_256, **change}.items() if value is not None}
    with pytest.raises(FunctionError, match=f"^{reason}$"):
        decrypt(arguments)


def test_missing_argument() -> None:
    with pytest.raises(FunctionError, match=r"^Cannot deserialize arguments$"):
        decrypt({"key": KEY_256, "nonce": NONCE, "algorithm": "aes256gcm"})


def test_plaintext_must_be_utf8() -> None:
    key, nonce = bytes(range(32)), bytes(12)
    sealed = AESGCM(key).encrypt(nonce, b"\xff\xfe", None)
    arguments = {"key": b64(key), "nonce": b64(nonce), "encrypted_data": b64(sealed), "algorithm": "aes256gcm"}
    with pytest.raises(FunctionError, match=r"^base64 decoded error$"):
        decrypt(arguments)


def test_aad_is_empty() -> None:
    key, nonce = bytes(range(16)), bytes(12)
    arguments = {"key": b64(key), "nonce": b64(nonce), "algorithm": "aes128gcm"}
    assert decrypt({**arguments, "encrypted_data": b64(AESGCM(key).encrypt(nonce, "héllo".encode(), b""))}) == "héllo"
    with pytest.raises(FunctionError, match=r"^decryption error$"):
        decrypt({**arguments, "encrypted_data": b64(AESGCM(key).encrypt(nonce, b"hello", b"aad"))})
