"""The per-participant task index that ListTasks reads instead of scanning every task.

One key per (participant, task), ``tasks-for-<user tag>-<position>``, where a position is
``<inverted creation time in µs, 16 digits>-<task uuid>``: byte order is newest first, and a
prefix scan returns one user's tasks without reading anyone else's. The user tag is a keyed
hash of the user id (``naming``), so whoever reads the database learns which entries belong to
one user, never who that is; the prefix is not ``task-`` so the index never mixes with the task
records. Entries are written in the commit that creates the task, so a task is indexed exactly
when it exists.

Tasks stored before this index existed are indexed once, by the first listing that finds
:data:`MARKER_KEY` missing or older (:meth:`TaskIndex.ensure_built`); the first index, which
named users by their hex id (``tasks-of-``), is deleted then. A record from before creation
times were kept has none, so its last status change stands in for it. A backfill cut short is
run again in full; a task whose status changed in between may then hold two entries, which a
listing shows once per page.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import uuid

from cloister.errors import InvalidArgumentError
from cloister.model.tasks import TaskState
from cloister.services.management.naming import Names, user_tag
from cloister.storage.client import StorageClient
from cloister.storage.ops import Delete, Put
from cloister.storage.records import encode_json

INDEX_PREFIX = b"tasks-for"
CLEAR_INDEX_PREFIX = b"tasks-of"
"""The first index's prefix, whose keys held user ids in hex: deleted by the backfill."""
MARKER_KEY = b"tasks-index"
"""Holds the index's version once every task stored before it has been indexed."""
INDEX_VERSION = 2
TASK_PREFIX = b"task"
"""``keys_with_prefix(TASK_PREFIX)``: every ``task-<uuid>`` record."""

_LATEST_MICROS = 10**16 - 1
_POSITION = re.compile(rb"\d{16}-[0-9a-f]{32}")
_BACKFILL_CHUNK = 500


def creation_time(task: TaskState) -> float:
    """When the task was created; for a record from before that was kept, its last change, or 0."""
    if task.created_at is not None:
        return task.created_at
    return task.changed_at or 0.0


def position(task: TaskState) -> bytes:
    """Where the task sorts in every participant's index: newest first, then by task id."""
    micros = min(max(int(creation_time(task) * 1_000_000), 0), _LATEST_MICROS)
    return f"{_LATEST_MICROS - micros:016d}-{task.task_id.hex}".encode()


def user_prefix(key: bytes, user_id: str) -> bytes:
    """The prefix of ``user_id``'s entries under the naming ``key``, as ``keys_with_prefix`` takes it."""
    return INDEX_PREFIX + b"-" + user_tag(key, "tasks", user_id)


def entries(key: bytes, task: TaskState) -> list[Put]:
    """The index entries of a task, one per participant, to commit with the task itself."""
    value = encode_json({"task_id": task.external_id})
    at = position(task)
    return [Put(user_prefix(key, user) + b"-" + at, value) for user in sorted(task.participants)]


def task_key(at: bytes) -> bytes:
    """The key of the task record an index position points to."""
    return b"task-" + str(uuid.UUID(at.split(b"-", 1)[1].decode())).encode()


def page_token(at: bytes) -> str:
    """An opaque token for "the entries after position ``at``"."""
    return base64.urlsafe_b64encode(at).rstrip(b"=").decode()


def parse_page_token(token: str) -> bytes | None:
    """The position a token names; None for the empty token (the first page).

    Raises:
        InvalidArgumentError: the token is not one a listing returned.
    """
    if not token:
        return None
    try:
        at = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        at = b""
    if not _POSITION.fullmatch(at):
        raise InvalidArgumentError(
            "page_token is not valid: pass the next_page_token of the previous ListTasks answer, or none"
        )
    return at


class TaskIndex:
    """Reads one user's positions and builds the index once for tasks older than it."""

    def __init__(self, storage: StorageClient) -> None:
        self._storage = storage
        self._names = Names(storage)
        self._built = False
        self._building = asyncio.Lock()

    async def key(self) -> bytes:
        return await self._names.key()

    async def entries(self, task: TaskState) -> list[Put]:
        """:func:`entries` of ``task`` under this index's key."""
        return entries(await self.key(), task)

    async def positions(self, user_id: str, after: bytes | None) -> list[bytes]:
        """``user_id``'s positions after ``after`` (all when None), newest first."""
        await self.ensure_built()
        prefix = user_prefix(await self.key(), user_id)
        found = [key[len(prefix) + 1 :] for key in await self._storage.keys_with_prefix(prefix)]
        return sorted(at for at in found if after is None or at > after)

    async def ensure_built(self) -> None:
        """Index the tasks stored before the index existed, unless that has been done."""
        if self._built:
            return
        async with self._building:
            if self._built:
                return
            marker = await self._storage.get(MARKER_KEY)
            if marker is None or json.loads(marker).get("version", 1) < INDEX_VERSION:
                await self._backfill()
            self._built = True

    async def _backfill(self) -> None:
        key = await self.key()
        keys = await self._storage.keys_with_prefix(TASK_PREFIX)
        for start in range(0, len(keys), _BACKFILL_CHUNK):
            values = await self._storage.read(keys[start : start + _BACKFILL_CHUNK])
            ops = [op for v in values if v is not None for op in entries(key, TaskState.from_json(json.loads(v.value)))]
            if ops:
                await self._storage.commit(ops)
        clear = await self._storage.keys_with_prefix(CLEAR_INDEX_PREFIX)
        for start in range(0, len(clear), _BACKFILL_CHUNK):
            await self._storage.commit([Delete(k) for k in clear[start : start + _BACKFILL_CHUNK]])
        await self._storage.commit([Put(MARKER_KEY, encode_json({"version": INDEX_VERSION}))])
