"""Management's own records are served from memory after a commit; everything else is read."""

from __future__ import annotations

import asyncio

import pytest

from cloister.errors import UnavailableError
from cloister.services.management.cache import CachedStorage
from cloister.storage.ops import Delete, Put, Versioned


class CountingStorage:
    def __init__(self) -> None:
        self.kv: dict[bytes, bytes] = {}
        self.reads: list[bytes] = []
        self.fail = False

    async def read(self, keys):
        self.reads.extend(keys)
        return [Versioned(self.kv[k], 1) if k in self.kv else None for k in keys]

    async def commit(self, ops):
        if self.fail:
            raise UnavailableError("storage is down")
        for op in ops:
            if isinstance(op, Put):
                self.kv[op.key] = op.value
            elif isinstance(op, Delete):
                self.kv.pop(op.key, None)


def test_owned_records_are_cached_and_tasks_are_not() -> None:
    async def body() -> None:
        backend = CountingStorage()
        cached = CachedStorage(backend)  # type: ignore[arg-type]
        await cached.commit([Put(b"function-1", b"f"), Put(b"task-1", b"t")])
        assert await cached.get(b"function-1") == b"f"
        assert await cached.get(b"task-1") == b"t"
        assert backend.reads == [b"task-1"]
        backend.kv[b"task-1"] = b"changed by the scheduler"
        assert await cached.get(b"task-1") == b"changed by the scheduler"
        await cached.commit([Delete(b"function-1")])
        assert await cached.get(b"function-1") is None
        assert b"function-1" not in backend.reads

    asyncio.run(body())


def test_failed_commit_forgets_what_it_touched() -> None:
    async def body() -> None:
        backend = CountingStorage()
        cached = CachedStorage(backend)  # type: ignore[arg-type]
        await cached.commit([Put(b"usage-1", b"0")])
        backend.fail = True
        with pytest.raises(UnavailableError):
            await cached.commit([Put(b"usage-1", b"1")])
        backend.fail = False
        assert await cached.get(b"usage-1") == b"0"
        assert backend.reads == [b"usage-1"]

    asyncio.run(body())
