"""Password hashing: argon2id at OWASP's parameters for new hashes, the reference's PBKDF2 still checked."""

from __future__ import annotations

import hashlib

import argon2
import pytest
from pydantic import ValidationError

from cloister.config import AuthenticationSettings
from cloister.errors import AuthenticationError
from cloister.services.authentication.passwords import (
    MAX_PASSWORD_BYTES,
    Argon2Hash,
    PasswordHasher,
    Pbkdf2Hash,
    password_too_long,
)

FAST = AuthenticationSettings(argon2_memory_kib=64, argon2_time_cost=1)
HASHER = PasswordHasher(FAST)


def test_defaults_are_owasps_argon2id_minimum() -> None:
    stored = PasswordHasher(AuthenticationSettings()).hash("teaclave")
    parameters = argon2.extract_parameters(stored.encoded)
    assert stored.encoded.startswith("$argon2id$")
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (19_456, 2, 1)


def test_salts_are_random() -> None:
    a, b = HASHER.hash("same"), HASHER.hash("same")
    assert a != b


def test_verify_accepts_the_right_password_and_rejects_others() -> None:
    stored = HASHER.hash("correct horse")
    assert HASHER.verify("correct horse", stored) is False
    for wrong in ("correct hors", "Correct horse", ""):
        with pytest.raises(AuthenticationError, match=r"^authentication failed$"):
            HASHER.verify(wrong, stored)


def test_a_reference_pbkdf2_hash_verifies_and_asks_to_be_replaced() -> None:
    salt = bytes(range(16))
    digest = hashlib.pbkdf2_hmac("sha512", "pässwörd".encode(), salt, 1000, dklen=64)
    stored = Pbkdf2Hash(salt, digest, 1000)
    assert HASHER.verify("pässwörd", stored) is True
    with pytest.raises(AuthenticationError):
        HASHER.verify("passwörd", stored)


def test_a_weaker_argon2_hash_asks_to_be_replaced() -> None:
    weak = PasswordHasher(AuthenticationSettings(argon2_memory_kib=32, argon2_time_cost=1)).hash("pw")
    assert HASHER.verify("pw", weak) is True
    assert HASHER.verify("pw", HASHER.hash("pw")) is False


def test_a_stored_hash_that_is_not_argon2_matches_nothing() -> None:
    with pytest.raises(AuthenticationError):
        HASHER.verify("", Argon2Hash("not a hash"))


def test_empty_password_hashes_and_verifies() -> None:
    HASHER.verify("", HASHER.hash(""))


def test_decoy_matches_nothing() -> None:
    decoy = HASHER.decoy()
    for guess in ("", "pw", decoy.encoded):
        with pytest.raises(AuthenticationError):
            HASHER.verify(guess, decoy)


def test_a_password_too_long_is_refused_even_when_it_matches() -> None:
    long = "a" * (MAX_PASSWORD_BYTES + 1)
    with pytest.raises(AuthenticationError):
        HASHER.verify(long, HASHER.hash(long))


def test_length_limit_counts_utf8_bytes() -> None:
    assert not password_too_long("a" * MAX_PASSWORD_BYTES)
    assert password_too_long("a" * (MAX_PASSWORD_BYTES + 1))
    assert password_too_long("é" * (MAX_PASSWORD_BYTES // 2 + 1))


def test_repr_hides_the_hash() -> None:
    stored = HASHER.hash("secret")
    assert stored.encoded not in repr(stored)
    legacy = Pbkdf2Hash(bytes(16), bytes(range(64)))
    assert "0, 1, 2" not in repr(legacy) and bytes(range(64)).hex() not in repr(legacy)


@pytest.mark.parametrize(
    "values",
    [{"argon2_time_cost": 0}, {"argon2_parallelism": 0}, {"argon2_memory_kib": 7}, {"login_failures_per_user": 0}],
)
def test_settings_refuse_costs_that_cannot_work(values: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        AuthenticationSettings(**values)  # type: ignore[arg-type]
