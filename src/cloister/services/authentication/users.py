"""The service's own user database: one sealed SQLite file, one JSON record per user.

A record is the reference's (§3.3) with an argon2id hash in ``password`` and the user's token
generation in ``generation``; records written before either existed (``salt`` and
``salted_password_hash``, no generation) are read as PBKDF2 hashes whose tokens no longer count.
Records live under the key ``user-<tag>``, where the tag is a keyed hash of the id (HMAC-SHA256
cut to 128 bits, under a key derived from the database's sealing key), so that the database file
names no user: the reference keyed them by the bare id, and earlier versions by ``user-<id>``,
which :meth:`UserStore.upgrade_keys` renames once. A deleted user leaves its role behind under
``gone-<tag>``: files, functions and tasks name their users by id, so whoever registers that id
again inherits them, and the policy must allow that for the old role too.
Writes go through one lock, and each is made only if every record it was decided on (the
target's, its former role, the acting user's) is still as it was read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloister.crypto.sealing import Sealer, load_or_create_key
from cloister.errors import AuthenticationError, DiskFullError, InternalError
from cloister.model.roles import Role
from cloister.services.authentication.passwords import Argon2Hash, PasswordHash, Pbkdf2Hash
from cloister.storage.ops import Delete, Put
from cloister.storage.sqlite import SQLiteStore

logger = logging.getLogger(__name__)

MAX_USER_ID_BYTES = 256
MAX_ATTRIBUTE_BYTES = 256
DATABASE_FILE_NAME = "users.db"
KEY_FILE_NAME = "users.key"
_KEY_PREFIX = b"user"
_GONE_PREFIX = b"gone"
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


def new_generation() -> str:
    """A token generation no earlier token can carry: 128 random bits, not a counter, so a user
    deleted and created again with the same id starts from one its old tokens never had."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class UserRecord:
    id: str
    role: Role
    password: PasswordHash
    generation: str
    """Tokens count only while they carry this value; every change to the user draws a new one."""

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"id": self.id, "role": self.role.to_json(), "generation": self.generation}
        if isinstance(self.password, Argon2Hash):
            data["password"] = self.password.encoded
        else:
            data["salt"] = list(self.password.salt)
            data["salted_password_hash"] = list(self.password.digest)
            data["pbkdf2_iterations"] = self.password.iterations
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> UserRecord:
        data = json.loads(raw)
        password: PasswordHash
        if "password" in data:
            password = Argon2Hash(str(data["password"]))
        else:
            password = Pbkdf2Hash(
                bytes(data["salt"]),
                bytes(data["salted_password_hash"]),
                int(data.get("pbkdf2_iterations", 100_000)),
            )
        return cls(str(data["id"]), Role.from_json(data["role"]), password, str(data.get("generation", "")))


_TAG_BYTES = 16


class _Names:
    """Storage keys of users: a keyed hash of the id, so the database names no user."""

    def __init__(self, sealing_key: bytes) -> None:
        self._key = HKDF(hashes.SHA256(), 32, salt=None, info=b"cloister user names").derive(sealing_key)

    def key(self, user_id: str, prefix: bytes = _KEY_PREFIX) -> bytes | None:
        """The key of ``user_id``'s record under ``prefix``; None for an id no user can have."""
        try:
            encoded = user_id.encode("utf-8")
        except UnicodeEncodeError:
            return None
        if not encoded or len(encoded) > MAX_USER_ID_BYTES:
            return None  # no such user can exist
        return prefix + b"-" + hmac.digest(self._key, encoded, "sha256")[:_TAG_BYTES].hex().encode()


class UserStore:
    """Users by id; failures of the database surface as ``InternalError("service internal error")``,
    except a full disk, which stays a ``DiskFullError``."""

    def __init__(self, directory: Path, on_change: Callable[[list[str]], Awaitable[None]] | None = None) -> None:
        """Open (creating if needed) ``directory/users.db`` sealed under ``directory/users.key``.

        ``on_change`` is awaited with the ids of the users each change touched, after it is
        stored and before the change returns (frontends forget what they knew of those users).
        """
        self._on_change = on_change
        key = load_or_create_key(directory / KEY_FILE_NAME)
        self._names = _Names(key)
        self._store = SQLiteStore(directory / DATABASE_FILE_NAME, Sealer(key), service="authentication")
        self._store.start()
        self._lock = asyncio.Lock()

    def close(self) -> None:
        self._store.close()

    def get(self, user_id: str) -> UserRecord | None:
        key = self._names.key(user_id)
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

    def former_role(self, user_id: str) -> Role | None:
        """The role of the user who last had ``user_id`` and was deleted; None if nobody was."""
        key = self._names.key(user_id, _GONE_PREFIX)
        if key is None:
            return None
        try:
            value = self._store.get(key)
            return None if value is None else Role.from_json(json.loads(value.value)["role"])
        except (sqlite3.Error, InternalError, ValueError, KeyError, TypeError) as exc:
            raise _internal("reading a deleted user", exc) from None

    async def create(self, record: UserRecord, *, former: Role | None = None, by: UserRecord | None = None) -> bool:
        """Store a new user; False, storing nothing, when the id is taken, its former role is not
        ``former`` (by default: nobody had the id), or the acting user ``by`` changed since read."""
        ops: list[Put | Delete] = [
            Put(self._required_key(record.id), record.to_json()),
            Delete(self._gone_key(record.id)),
        ]
        return await self._commit_if({record.id: None}, by, ops, former=(record.id, former))

    async def replace(self, current: UserRecord, record: UserRecord, *, by: UserRecord | None = None) -> bool:
        """Overwrite the user ``current`` with ``record``; False, storing nothing, when the stored user
        is no longer exactly ``current`` (changed or deleted since it was read and decided on), or
        the acting user ``by`` changed."""
        if record.id != current.id:
            raise ValueError("a user's record cannot change its id")
        return await self._commit_if({current.id: current}, by, [Put(self._required_key(record.id), record.to_json())])

    async def delete(self, current: UserRecord, *, by: UserRecord | None = None) -> bool:
        """Remove the user ``current``, remembering its role; False when it or ``by`` changed since read."""
        gone = json.dumps({"id": current.id, "role": current.role.to_json()}).encode("utf-8")
        ops: list[Put | Delete] = [Delete(self._required_key(current.id)), Put(self._gone_key(current.id), gone)]
        return await self._commit_if({current.id: current}, by, ops)

    async def _commit_if(
        self,
        expected: dict[str, UserRecord | None],
        by: UserRecord | None,
        ops: Sequence[Put | Delete],
        former: tuple[str, Role | None] | None = None,
    ) -> bool:
        """Commit ``ops`` if every user in ``expected`` (None: absent) and ``by`` are still as read,
        and so is ``former``'s former role, all checked under the lock."""
        changed = sorted(expected)
        if by is not None:
            expected = {**expected, by.id: by} if by.id not in expected else expected
        async with self._lock:
            if any(self.get(user_id) != record for user_id, record in expected.items()):
                return False
            if former is not None and self.former_role(former[0]) != former[1]:
                return False
            await self._commit(ops)
        if self._on_change is not None:
            await self._on_change(changed)
        return True

    def list_ids(self) -> list[str]:
        """Every user id, in byte order."""
        return [record.id for record in self.list_records()]

    def list_records(self) -> list[UserRecord]:
        """Every user, in id byte order, read from one snapshot."""
        try:
            keys = self._store.keys_with_prefix(_KEY_PREFIX)
            values = self._store.read(keys)
            records = [UserRecord.from_json(v.value) for v in values if v is not None]
        except (sqlite3.Error, InternalError, ValueError, KeyError, TypeError) as exc:
            raise _internal("listing users", exc) from None
        return sorted(records, key=lambda record: record.id.encode("utf-8"))

    async def upgrade_keys(self) -> int:
        """Move records stored under a key that names their user (``user-<id>``, ``gone-<id>``, as
        earlier versions wrote them) to their keyed names; how many were moved."""
        moved = 0
        for prefix in (_KEY_PREFIX, _GONE_PREFIX):
            try:
                keys = self._store.keys_with_prefix(prefix)
                values = self._store.read(keys)
                ids = [str(json.loads(v.value)["id"]) if v is not None else None for v in values]
            except (sqlite3.Error, InternalError, ValueError, KeyError, TypeError) as exc:
                raise _internal("reading users to rename", exc) from None
            ops: list[Put | Delete] = []
            for key, value, user_id in zip(keys, values, ids, strict=True):
                named = None if user_id is None else self._names.key(user_id, prefix)
                if value is not None and named is not None and named != key:
                    ops += [Put(named, value.value), Delete(key)]
                    moved += 1
            if ops:
                async with self._lock:
                    await self._commit(ops)
        if moved:
            logger.info("user database: %d record(s) renamed to keys that do not name their user", moved)
        return moved

    def _required_key(self, user_id: str) -> bytes:
        key = self._names.key(user_id)
        if key is None:
            raise AuthenticationError("invalid user id")
        return key

    def _gone_key(self, user_id: str) -> bytes:
        key = self._names.key(user_id, _GONE_PREFIX)
        if key is None:
            raise AuthenticationError("invalid user id")
        return key

    async def _commit(self, ops: Sequence[Put | Delete]) -> None:
        try:
            await self._store.commit(ops)
        except DiskFullError:
            raise  # says what is wrong; the store logged where
        except Exception as exc:
            raise _internal("writing a user", exc) from None


def _internal(action: str, exc: BaseException) -> InternalError:
    logger.error("user database failed while %s: %s", action, type(exc).__name__, exc_info=exc)
    return InternalError("service internal error")
