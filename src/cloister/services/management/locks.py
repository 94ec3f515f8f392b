"""Per-key asyncio locks, so a read-modify-write of one record never loses a concurrent update.

Teaclave read and rewrote records without locking and could lose one of two simultaneous
approvals (§8.1). Management is one process, so an in-process lock per storage key, held from
the read until the commit, is enough; locks of keys nobody waits for are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


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
