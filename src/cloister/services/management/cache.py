"""A write-through cache of the records only management writes: functions, usage counters, user lists.

The scheduler writes tasks and output records, so those are always read from storage; but
``function-``, ``usage-`` and ``user-`` records change only through this (single) management
process, so their last committed value can be served from memory. A commit that fails forgets
the keys it touched, since it may or may not have been applied.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from cloister.storage.client import StorageClient
from cloister.storage.ops import Delete, Op, Put, QueueItem, Versioned

OWNED_PREFIXES = (b"function-", b"usage-", b"user-", b"requirements-")
_CAPACITY = 10_000


class CachedStorage:
    """The :class:`StorageClient` interface, with management's own records kept in memory."""

    def __init__(self, storage: StorageClient, capacity: int = _CAPACITY) -> None:
        self._storage = storage
        self._capacity = capacity
        self._cache: OrderedDict[bytes, Versioned | None] = OrderedDict()

    @staticmethod
    def _owned(key: bytes) -> bool:
        return key.startswith(OWNED_PREFIXES)

    def _remember(self, key: bytes, value: Versioned | None) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)

    async def get(self, key: bytes) -> bytes | None:
        (value,) = await self.read([key])
        return None if value is None else value.value

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        missing = [k for k in keys if not (self._owned(k) and k in self._cache)]
        fetched = dict(zip(missing, await self._storage.read(missing), strict=True)) if missing else {}
        for key, value in fetched.items():
            if self._owned(key):
                self._remember(key, value)
        return [fetched[k] if k in fetched else self._cache[k] for k in keys]

    async def commit(self, ops: Sequence[Op]) -> None:
        touched = [op.key for op in ops if isinstance(op, Put | Delete) and self._owned(op.key)]
        try:
            await self._storage.commit(ops)
        except BaseException:
            for key in touched:
                self._cache.pop(key, None)
            raise
        for op in ops:
            if isinstance(op, Put) and self._owned(op.key):
                # The version is unknown here; management never compares versions of these records.
                self._remember(op.key, Versioned(op.value, 0))
            elif isinstance(op, Delete) and self._owned(op.key):
                self._remember(op.key, None)

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        return await self._storage.keys_with_prefix(prefix)

    async def watch(self, key: bytes, after_version: int, timeout: float) -> Versioned | None:
        return await self._storage.watch(key, after_version, timeout)

    async def watch_queue(self, queue: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        return await self._storage.watch_queue(queue, after_seq, limit, timeout)
