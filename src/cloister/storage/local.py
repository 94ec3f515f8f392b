"""The :class:`~cloister.storage.client.StorageClient` calls over a database opened in this process.

For tools that work on a stopped platform's storage, or build one directly: benchmarks that
write a million audit entries without a million RPCs, offline checks. A running platform's
services always go through the storage service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cloister.storage.engine import Storage
from cloister.storage.ops import Op, Versioned, Written, written
from cloister.storage.sqlite import SQLiteStorage, SQLiteStore


class LocalStorage:
    """What management's logic needs of storage (get, read, commit, keys by prefix), in process.

    Takes either engine (:func:`~cloister.storage.engine.open_storage`), or a bare
    :class:`SQLiteStore`.
    """

    def __init__(self, store: Storage | SQLiteStore) -> None:
        self._store: Storage = SQLiteStorage(store) if isinstance(store, SQLiteStore) else store

    async def get(self, key: bytes) -> bytes | None:
        (value,) = await self.read([key])
        return None if value is None else value.value

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        await asyncio.sleep(0)  # as a call would, let other tasks run in between
        return await self._store.read(keys)

    async def commit(self, ops: Sequence[Op]) -> Written:
        return written(ops, await self._store.commit(ops))

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        await asyncio.sleep(0)
        return await self._store.keys_with_prefix(prefix)
