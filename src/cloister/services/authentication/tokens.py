"""Login tokens: HS512 JWTs with Teaclave's claims, signed with a secret that survives restarts.

Teaclave drew a new secret at every start, logging everyone out; Cloister keeps 64 random
bytes in ``<state_dir>/authentication/jwt.key`` (mode 0600), so tokens stay valid until they
expire. Each token also carries its user's token generation (``gen``), which the caller
compares with the stored one: any change to the user draws a new generation and so ends every
older token at once. The ``role`` claim is kept for Teaclave's clients; nothing trusts it.
Time is a parameter of issuing and checking, never read from the clock in here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from cloister.crypto.secret_files import create_secret_file
from cloister.errors import AuthenticationError, ConfigurationError
from cloister.model.roles import Role

ISSUER = "Teaclave"
ALGORITHM = "HS512"
SECRET_LENGTH = 64
KEY_FILE_NAME = "jwt.key"
_REQUIRED_CLAIMS = ("sub", "role", "iss", "exp", "gen")


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: whose it is, the role at login, the issuer, the expiry (unix s)
    and the user's token generation at login."""

    sub: str
    role: str
    iss: str
    exp: int
    gen: str


class JWTIssuer:
    """Issues and checks the tokens ``UserLogin`` returns and every other call presents."""

    def __init__(self, secret: bytes, lifetime_seconds: int = 86_400) -> None:
        if len(secret) < SECRET_LENGTH:
            raise ValueError(f"the JWT secret must be at least {SECRET_LENGTH} bytes")
        self._secret = secret
        self._lifetime = lifetime_seconds

    @classmethod
    def load_or_create(cls, directory: Path, lifetime_seconds: int = 86_400) -> JWTIssuer:
        """The issuer whose secret is in ``directory/jwt.key``, creating the file on first use."""
        path = directory / KEY_FILE_NAME
        create_secret_file(path, os.urandom(SECRET_LENGTH))
        secret = path.read_bytes()
        if len(secret) != SECRET_LENGTH:
            raise ConfigurationError(
                f"{path} does not hold a {SECRET_LENGTH}-byte key; delete it to issue a new one "
                "(every user then has to log in again)"
            )
        return cls(secret, lifetime_seconds)

    def issue(self, user_id: str, role: Role | str, generation: str, now: float) -> str:
        """A token for ``user_id`` with ``role``, valid until ``now`` plus the token lifetime."""
        claims = {"sub": user_id, "role": str(role), "iss": ISSUER, "exp": int(now) + self._lifetime, "gen": generation}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_jwt(self, token: str, user_id: str, *, now: float) -> TokenClaims:
        """The claims of ``token`` if it is valid for ``user_id`` at ``now``.

        Raises:
            AuthenticationError: "authentication failed" for anything wrong: another algorithm,
                a bad signature, a missing claim, another issuer or subject, or ``exp`` not
                strictly after ``now`` (no leeway). The generation is the caller's to check.
        """
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    # Expiry is checked below against ``now``; PyJWT would read the clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthenticationError() from None
        sub, role, iss, exp, gen = (payload[name] for name in _REQUIRED_CLAIMS)
        if not all(isinstance(claim, str) for claim in (sub, role, iss, gen)) or not gen:
            raise AuthenticationError()
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise AuthenticationError()
        if sub != user_id or iss != ISSUER or exp <= now:
            raise AuthenticationError()
        return TokenClaims(sub=sub, role=role, iss=iss, exp=exp, gen=gen)
