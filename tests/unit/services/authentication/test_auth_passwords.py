"""PBKDF2 password hashing: round trip, salts, limits and the reference's parameters."""

from __future__ import annotations

import hashlib

import pytest

from cloister.config import AuthenticationSettings
from cloister.errors import AuthenticationError
from cloister.services.authentication.passwords import (
    DEFAULT_ITERATIONS,
    HASH_LENGTH,
    MAX_PASSWORD_BYTES,
    SALT_LENGTH,
    hash_password,
    password_too_long,
    unguessable_hash,
    verify_password,
)

FAST = 1000


def test_default_iteration_count_is_the_references() -> None:
    assert DEFAULT_ITERATIONS == 100_000
    assert AuthenticationSettings().pbkdf2_iterations == 100_000
    stored = hash_password("teaclave")
    assert stored.iterations == 100_000
    verify_password("teaclave", stored)


def test_hash_is_pbkdf2_hmac_sha512_of_the_utf8_bytes() -> None:
    salt = bytes(range(SALT_LENGTH))
    stored = hash_password("pässwörd", FAST, salt=salt)
    expected = hashlib.pbkdf2_hmac("sha512", "pässwörd".encode(), salt, FAST, dklen=64)
    assert stored.digest == expected
    assert len(stored.digest) == HASH_LENGTH


def test_salts_are_random() -> None:
    a, b = hash_password("same", FAST), hash_password("same", FAST)
    assert len(a.salt) == SALT_LENGTH
    assert a.salt != b.salt and a.digest != b.digest


def test_verify_accepts_the_right_password_and_rejects_others() -> None:
    stored = hash_password("correct horse", FAST)
    verify_password("correct horse", stored)
    for wrong in ("correct hors", "Correct horse", ""):
        with pytest.raises(AuthenticationError, match=r"^authentication failed$"):
            verify_password(wrong, stored)


def test_empty_password_hashes_and_verifies() -> None:
    stored = hash_password("", FAST)
    verify_password("", stored)


def test_unguessable_hash_matches_nothing() -> None:
    decoy = unguessable_hash(FAST)
    with pytest.raises(AuthenticationError):
        verify_password("", decoy)


def test_length_limit_counts_utf8_bytes() -> None:
    assert not password_too_long("a" * MAX_PASSWORD_BYTES)
    assert password_too_long("a" * (MAX_PASSWORD_BYTES + 1))
    assert password_too_long("é" * (MAX_PASSWORD_BYTES // 2 + 1))


def test_repr_hides_salt_and_hash() -> None:
    stored = hash_password("secret", FAST)
    assert stored.salt.hex() not in repr(stored)
    assert str(list(stored.digest)) not in repr(stored)
