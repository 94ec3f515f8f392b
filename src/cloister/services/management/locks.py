"""Read-modify-writes that never lose a concurrent update, across management replicas.

Teaclave read and rewrote records without locking and could lose one of two simultaneous
approvals (§8.1). Here every read-modify-write commits on the condition that the records it
decided on are unchanged (``Check``), and is run again by :func:`retrying` when another
management replica, or the scheduler, changed one of them first. Within one process a lock per
storage key, held from the read until the commit, keeps its own requests from racing at all;
locks of keys nobody waits for are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from cloister.errors import ConflictError

T = TypeVar("T")

CONFLICT_ATTEMPTS = 10
"""Times a read-modify-write is tried before its conflict reaches the caller (as ABORTED)."""


async def retrying(operation: Callable[[], Awaitable[T]]) -> T:
    """``operation()`` (read, decide, commit conditionally), again while its commit loses a race.

    A lost race left nothing written, so the operation reads and decides afresh; the pauses
    between tries grow and are random, so replicas racing for one record do not meet again.
    """
    for attempt in range(CONFLICT_ATTEMPTS - 1):
        try:
            return await operation()
        except ConflictError:
            await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
    return await operation()


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class KeyLocks:
    def __init__(self) -> None:
        self._entries: dict[bytes, _Entry] = {}

    def __len__(self) -> int:
        """How many keys currently have a lock (held or waited for)."""
        return len(self._entries)

    @contextlib.asynccontextmanager
    async def hold(self, *keys: bytes) -> AsyncIterator[None]:
        """Hold the locks of ``keys``, taken in byte order so two holders never deadlock.

        A holder that needs another key later (``hold`` inside ``hold``) must always nest the
        same kinds of key in the same order; management nests only task → usage.
        """
        referenced: list[tuple[bytes, _Entry]] = []
        locked: list[_Entry] = []
        try:
            for key in sorted(set(keys)):
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = _Entry()
                entry.users += 1
                referenced.append((key, entry))
                await entry.lock.acquire()
                locked.append(entry)
            yield
        finally:
            for entry in reversed(locked):
                entry.lock.release()
            for key, entry in referenced:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[key]
