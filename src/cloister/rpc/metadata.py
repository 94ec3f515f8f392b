"""Identity metadata on requests: ``id`` and ``token`` from clients, ``role`` from the frontend."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cloister.errors import AuthenticationError, FailedOperationError

ID = "id"
TOKEN = "token"  # noqa: S105 - a metadata key, not a secret
ROLE = "role"
_MAX_VALUE_LENGTH = 8192


@dataclass(frozen=True)
class Caller:
    """Who a request says it comes from; checked by the frontend, trusted after it."""

    user_id: str | None
    token: str | None
    role: str | None

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        values: dict[str, str] = {}
        for key, value in metadata or ():
            if key in (ID, TOKEN, ROLE) and key not in values:
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                values[key] = text[:_MAX_VALUE_LENGTH]
        return cls(values.get(ID), values.get(TOKEN), values.get(ROLE))

    def require_credentials(self) -> tuple[str, str]:
        """The ``id`` and ``token`` a client must send (UNAUTHENTICATED without them)."""
        if self.user_id is None:
            raise AuthenticationError("missing user id")
        if self.token is None:
            raise AuthenticationError("missing token")
        return self.user_id, self.token

    def require_user_id(self) -> str:
        """Management's check: the frontend always forwards ``id``."""
        if self.user_id is None:
            raise FailedOperationError("missing user id")
        return self.user_id

    def require_role(self) -> str:
        if self.role is None:
            raise FailedOperationError("missing user role")
        return self.role


def outgoing(user_id: str, token: str = "", role: str | None = None) -> tuple[tuple[str, str], ...]:
    pairs = [(ID, user_id), (TOKEN, token)]
    if role is not None:
        pairs.append((ROLE, role))
    return tuple(pairs)
