"""``builtin-rsa-sign`` on Teaclave's fixture key, other key encodings, and keys ring would refuse."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from memory_runtime import MemoryRuntime
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.functions import FunctionError, builtin_functions

FIXTURE = TEACLAVE_FIXTURES / "functions" / "rsa_sign"
NAME = "builtin-rsa-sign"


def sign(arguments: dict, key: bytes) -> str:
    return builtin_functions()[NAME].run(arguments, MemoryRuntime({"rsa_key": key}))


def der(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, encoding: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, encoding, serialization.NoEncryption())


@functools.cache
def fixture_key() -> rsa.RSAPrivateKey:
    key = serialization.load_der_private_key((FIXTURE / "key.der").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def test_fixture_signature_matches_exactly() -> None:
    expected = (FIXTURE / "expected_rsasign.txt").read_text().replace("\n", "")
    assert sign({"data": "test data"}, (FIXTURE / "key.der").read_bytes()) == expected


def test_pkcs8_key_signs_the_same() -> None:
    pkcs8 = der(fixture_key(), serialization.PrivateFormat.PKCS8)
    assert sign({"data": "test data"}, pkcs8) == sign({"data": "test data"}, (FIXTURE / "key.der").read_bytes())


def test_signature_verifies_over_utf8_bytes() -> None:
    signature = base64.b64decode(sign({"data": "héllo ✓"}, (FIXTURE / "key.der").read_bytes()), validate=True)
    fixture_key().public_key().verify(signature, "héllo ✓".encode(), padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("arguments", [{}, {"data": 1}, {"data": None}])
def test_arguments(arguments: dict) -> None:
    with pytest.raises(FunctionError, match=r"^Cannot deserialize arguments$"):
        sign(arguments, (FIXTURE / "key.der").read_bytes())


def _small_key() -> bytes:
    return der(rsa.generate_private_key(65537, 1024), serialization.PrivateFormat.TraditionalOpenSSL)


def _exponent_three_key() -> bytes:
    return der(rsa.generate_private_key(3, 2048), serialization.PrivateFormat.TraditionalOpenSSL)


def _ec_key() -> bytes:
    return der(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)


@pytest.mark.parametrize("make_key", [_small_key, _exponent_three_key, _ec_key, lambda: b"", lambda: b"\x30\x03junk"])
def test_invalid_keys(make_key: Callable[[], bytes]) -> None:
    with pytest.raises(FunctionError, match=r"^invalid rsa key$"):
        sign({"data": "test data"}, make_key())
