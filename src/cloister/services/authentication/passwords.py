"""Password hashing: argon2id for every password set now, PBKDF2 (reference §4.3) only to check old ones.

Teaclave hashed with PBKDF2-HMAC-SHA512 at 100 000 iterations, which a GPU tries quickly;
Cloister hashes with argon2id at OWASP's parameters and re-hashes a stored PBKDF2 (or weaker
argon2) hash the next time its password is given correctly. Hashing is deliberately slow;
async callers run these functions with ``asyncio.to_thread`` so that one login does not stall
every other call.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

import argon2

from cloister.config import AuthenticationSettings
from cloister.errors import AuthenticationError

MAX_PASSWORD_BYTES = 4096
"""Longer passwords are refused: they add nothing and only make requests larger."""


@dataclass(frozen=True)
class Argon2Hash:
    """An argon2id hash in its standard ``$argon2id$v=19$m=…,t=…,p=…$salt$hash`` form."""

    encoded: str

    def __repr__(self) -> str:
        return "Argon2Hash(<redacted>)"


@dataclass(frozen=True)
class Pbkdf2Hash:
    """A password stored the reference's way: salt, PBKDF2-HMAC-SHA512 key and its iteration count."""

    salt: bytes
    digest: bytes
    iterations: int = 100_000

    def __repr__(self) -> str:
        return f"Pbkdf2Hash(iterations={self.iterations}, <redacted>)"


PasswordHash = Argon2Hash | Pbkdf2Hash


class PasswordHasher:
    """Hashes new passwords and checks given ones against whichever kind of hash is stored."""

    def __init__(self, settings: AuthenticationSettings) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )

    def hash(self, password: str) -> Argon2Hash:
        """Hash ``password`` (its UTF-8 bytes) under a fresh random salt."""
        return Argon2Hash(self._argon2.hash(password))

    def verify(self, password: str, stored: PasswordHash) -> bool:
        """Check ``password`` against ``stored``; True when ``stored`` should be replaced by a new hash.

        Raises:
            AuthenticationError: "authentication failed" when it does not match. A password too
                long to have been accepted is rejected after hashing all the same, so its length
                does not show in the timing.
        """
        if isinstance(stored, Pbkdf2Hash):
            candidate = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), stored.salt, stored.iterations, 64)
            matches = hmac.compare_digest(candidate, stored.digest)
            needs_rehash = True
        else:
            try:
                matches = self._argon2.verify(stored.encoded, password)
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                matches = False
            needs_rehash = matches and self._argon2.check_needs_rehash(stored.encoded)
        if not matches or password_too_long(password):
            raise AuthenticationError()
        return needs_rehash

    def decoy(self) -> Argon2Hash:
        """A hash no password matches: verifying against it costs what a real check costs.

        Logins for unknown users verify against one, so the answer time does not tell which user
        ids exist.
        """
        return self.hash(os.urandom(32).hex())


def password_too_long(password: str) -> bool:
    return len(password) > MAX_PASSWORD_BYTES or len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES
