"""The service's own user database: one sealed SQLite file, one §3.3 JSON record per user.

Records live under the key ``user-<id>`` rather than the bare id (the reference's LevelDB key)
so that the store's prefix scan lists them in id byte order. Writes go through one lock, so
"create unless it exists" cannot race with another create of the same id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloister.crypto.sealing import Sealer, load_or_create_key
from cloister.errors import AuthenticationError, InternalError
from cloister.model.roles import Role
from cloister.services.authentication.passwords import DEFAULT_ITERATIONS, PasswordHash
from cloister.storage.ops import Delete, Put
from cloister.storage.sqlite import SQLiteStore

logger = logging.getLogger(__name__)

MAX_USER_ID_BYTES = 256
MAX_ATTRIBUTE_BYTES = 256
DATABASE_FILE_NAME = "users.db"
KEY_FILE_NAME = "users.key"
_KEY_PREFIX = b"user"
# Control characters, line separators and lone surrogates would corrupt logs and metadata.


def _printable(text: str, max_bytes: int) -> bool:
    """Printable ASCII only: ids and roles travel in gRPC metadata, which allows nothing else."""
    if not (text.isascii() and text.isprintable()):
        return False
    return len(text) <= max_bytes


def check_user_id(user_id: str) -> None:
    """Raise ``AuthenticationError("invalid user id")`` for an id a new user may not have."""
    if not user_id or not _printable(user_id, MAX_USER_ID_BYTES):
        raise AuthenticationError("invalid user id")


def check_role(role: Role) -> None:
    """Raise ``AuthenticationError("invalid role")`` for a role that does not parse or has a bad attribute."""
    if not role.is_valid or not _printable(role.attribute, MAX_ATTRIBUTE_BYTES):
        raise AuthenticationError("invalid role")


@dataclass(frozen=True)
class UserRecord:
    id: str
    role: Role
    password: PasswordHash

    def to_json(self) -> bytes:
        """The §3.3 record; ``pbkdf2_iterations`` is added only when it is not the reference's 100 000."""
        data: dict[str, Any] = {
            "id": self.id,
            "role": self.role.to_json(),
            "salt": list(self.password.salt),
            "salted_password_hash": list(self.password.digest),
        }
        if self.password.iterations != DEFAULT_ITERATIONS:
            data["pbkdf2_iterations"] = self.password.iterations
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> UserRecord:
        data = json.loads(raw)
        password = PasswordHash(
            bytes(data["salt"]),
            bytes(data["salted_password_hash"]),
            int(data.get("pbkdf2_iterations", DEFAULT_ITERATIONS)),
        )
        return cls(str(data["id"]), Role.from_json(data["role"]), password)


def _key(user_id: str) -> bytes | None:
    try:
        encoded = user_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if not encoded or len(encoded) > MAX_USER_ID_BYTES:
        return None  # no such user can exist
    return _KEY_PREFIX + b"-" + encoded


class UserStore:
    """Users by id; failures of the database surface as ``InternalError("service internal error")``."""

    def __init__(self, directory: Path) -> None:
        """Open (creating if needed) ``directory/users.db`` sealed under ``directory/users.key``."""
        key = load_or_create_key(directory / KEY_FILE_NAME)
        self._store = SQLiteStore(directory / DATABASE_FILE_NAME, Sealer(key))
        self._store.start()
        self._lock = asyncio.Lock()

    def close(self) -> None:
        self._store.close()

    def get(self, user_id: str) -> UserRecord | None:
        key = _key(user_id)
        if key is None:
            return None
        try:
            value = self._store.get(key)
            record = None if value is None else UserRecord.from_json(value.value)
        except (sqlite3.Error, InternalError, ValueError, KeyError, TypeError) as exc:
            raise _internal("reading a user", exc) from None
        if record is not None and record.id != user_id:
            raise _internal("reading a user", ValueError("record id does not match its key"))
        return record

    def exists(self, user_id: str) -> bool:
        return self.get(user_id) is not None

    async def create(self, record: UserRecord) -> bool:
        """Store a new user; False, storing nothing, when the id is taken."""
        return await self._commit_if(record.id, False, Put(self._required_key(record.id), record.to_json()))

    async def replace(self, record: UserRecord) -> bool:
        """Overwrite an existing user; False, storing nothing, when it no longer exists."""
        return await self._commit_if(record.id, True, Put(self._required_key(record.id), record.to_json()))

    async def delete(self, user_id: str) -> bool:
        """Remove a user; False when there was none."""
        return await self._commit_if(user_id, True, Delete(self._required_key(user_id)))

    async def _commit_if(self, user_id: str, exists: bool, op: Put | Delete) -> bool:
        """Commit ``op`` if the user's existence is still ``exists``, checked under the store's lock."""
        async with self._lock:
            if self.exists(user_id) != exists:
                return False
            await self._commit([op])
            return True

    def list_ids(self) -> list[str]:
        """Every user id, in byte order."""
        prefix = len(_KEY_PREFIX) + 1
        try:
            keys = self._store.keys_with_prefix(_KEY_PREFIX)
            return [key[prefix:].decode("utf-8") for key in keys]
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise _internal("listing users", exc) from None

    def list_records(self) -> list[UserRecord]:
        """Every user, in id byte order, read from one snapshot."""
        try:
            keys = self._store.keys_with_prefix(_KEY_PREFIX)
            values = self._store.read(keys)
            return [UserRecord.from_json(v.value) for v in values if v is not None]
        except (sqlite3.Error, InternalError, ValueError, KeyError, TypeError) as exc:
            raise _internal("listing users", exc) from None

    @staticmethod
    def _required_key(user_id: str) -> bytes:
        key = _key(user_id)
        if key is None:
            raise AuthenticationError("invalid user id")
        return key

    async def _commit(self, ops: Sequence[Put | Delete]) -> None:
        try:
            await self._store.commit(ops)
        except Exception as exc:
            raise _internal("writing a user", exc) from None


def _internal(action: str, exc: BaseException) -> InternalError:
    logger.error("user database failed while %s: %s", action, type(exc).__name__, exc_info=exc)
    return InternalError("service internal error")
