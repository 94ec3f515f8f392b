"""External ids: ``<prefix>-<uuid>``, both the id users see and the storage key (reference §3.1)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cloister.errors import CloisterError, InvalidArgumentError

# Namespace DNS, as Teaclave uses for the per-user function lists.
_MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class ExternalId:
    prefix: str
    uuid: uuid.UUID

    def __str__(self) -> str:
        return f"{self.prefix}-{self.uuid}"

    @property
    def key(self) -> bytes:
        return str(self).encode()

    @classmethod
    def new(cls, prefix: str) -> ExternalId:
        return cls(prefix, uuid.uuid4())

    @classmethod
    def parse(cls, text: str, prefix: str | None = None) -> ExternalId:
        """Parse ``text``; with ``prefix``, anything of another kind is rejected too.

        Raises:
            InvalidArgumentError: the text is not an external id (of that kind).
        """
        if len(text) > _MAX_ID_LENGTH:
            raise InvalidArgumentError("id is too long")
        head, sep, rest = text.partition("-")
        if not sep or not rest or (prefix is not None and head != prefix):
            raise InvalidArgumentError(f"not a {prefix or 'valid'} id")
        try:
            parsed = uuid.UUID(rest)
        except ValueError:
            raise InvalidArgumentError(f"not a {prefix or 'valid'} id") from None
        return cls(head, parsed)

    def to_json(self) -> dict[str, str]:
        return {"prefix": self.prefix, "uuid": str(self.uuid)}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> ExternalId:
        return cls(data["prefix"], uuid.UUID(data["uuid"]))


def parse_id(text: str, prefix: str, error: type[CloisterError]) -> ExternalId:
    """Parse an id of kind ``prefix``, answering the RPC's own error when it does not parse."""
    try:
        return ExternalId.parse(text, prefix)
    except InvalidArgumentError:
        raise error() from None


def usage_key(function_uuid: uuid.UUID) -> bytes:
    return f"usage-{function_uuid}".encode()


def payload_key(function_uuid: uuid.UUID, sha256_hex: str) -> bytes:
    """A function's payload, raw bytes in a record of its own, named by the function and its digest
    (an update stores the new payload under a new key, so no reader sees a half-changed one)."""
    return f"payload-{function_uuid}-{sha256_hex}".encode()


def requirements_key(function_uuid: uuid.UUID) -> bytes:
    """The labels a function requires of execution services (a Cloister record of its own)."""
    return f"requirements-{function_uuid}".encode()
