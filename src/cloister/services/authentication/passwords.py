"""Password hashing as the reference does it: PBKDF2-HMAC-SHA512, 16-byte salt, 64-byte hash (§4.3).

Hashing is deliberately slow (100 000 iterations by default); async callers run these
functions with ``asyncio.to_thread`` so that one login does not stall every other call.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cloister.errors import AuthenticationError

DEFAULT_ITERATIONS = 100_000
SALT_LENGTH = 16
HASH_LENGTH = 64
MAX_PASSWORD_BYTES = 4096
"""Longer passwords are refused: they add nothing and only make requests larger."""


@dataclass(frozen=True)
class PasswordHash:
    """A stored password: salt, derived key and the iteration count that produced it."""

    salt: bytes
    digest: bytes
    iterations: int = DEFAULT_ITERATIONS

    def __repr__(self) -> str:
        return f"PasswordHash(iterations={self.iterations}, <redacted>)"


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS, *, salt: bytes | None = None) -> PasswordHash:
    """Hash ``password`` (its UTF-8 bytes) under a fresh random salt unless one is given."""
    salt = os.urandom(SALT_LENGTH) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, dklen=HASH_LENGTH)
    return PasswordHash(salt, digest, iterations)


def verify_password(password: str, stored: PasswordHash) -> None:
    """Raise ``AuthenticationError("authentication failed")`` unless ``password`` matches ``stored``.

    The comparison runs in constant time; a password too long to have been accepted is
    rejected after hashing all the same, so its length does not show in the timing.
    """
    candidate = hash_password(password, stored.iterations, salt=stored.salt)
    matches = hmac.compare_digest(candidate.digest, stored.digest)
    if not matches or password_too_long(password):
        raise AuthenticationError()


def password_too_long(password: str) -> bool:
    return len(password) > MAX_PASSWORD_BYTES or len(password.encode("utf-8")) > MAX_PASSWORD_BYTES


def unguessable_hash(iterations: int) -> PasswordHash:
    """A hash no password matches: verifying against it costs what a real check costs.

    Logins for unknown users verify against one, so the answer time does not tell which user
    ids exist.
    """
    return PasswordHash(os.urandom(SALT_LENGTH), os.urandom(HASH_LENGTH), iterations)
