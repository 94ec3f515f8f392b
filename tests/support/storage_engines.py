"""Both storage engines, opened the same way, for tests parametrised over them (``storage_engine``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from postgres_cluster import PostgresCluster

from cloister.crypto.sealing import Sealer
from cloister.storage.engine import Storage
from cloister.storage.ops import Enqueue, Op, Put, QueueItem, Versioned, Written, written
from cloister.storage.postgres import PostgresStore
from cloister.storage.sqlite import SQLiteStorage, SQLiteStore

T = TypeVar("T")
KEY = bytes(range(32))
ENGINES = ("sqlite", "postgres")


class Engine(Protocol):
    name: str

    async def open(self) -> Storage:
        """A started store over this engine's database: the same data each time it is opened."""
        ...


class SQLiteEngine:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    async def open(self) -> Storage:
        store = SQLiteStorage(SQLiteStore(self.path, Sealer(KEY)))
        await store.start()
        return store


class PostgresEngine:
    name = "postgres"

    def __init__(self, cluster: PostgresCluster, database: str) -> None:
        self.cluster = cluster
        self.database = database

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.database)

    async def open(self) -> Storage:
        store = PostgresStore(self.dsn, Sealer(KEY), password=self.cluster.password)
        await store.start()
        return store


@pytest.fixture(params=ENGINES)
def storage_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    """Each engine in turn, over an empty database of its own."""
    if request.param == "sqlite":
        return SQLiteEngine(tmp_path / "storage" / "cloister.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return PostgresEngine(cluster, request.getfixturevalue("postgres_database"))


@pytest.fixture
def postgres_engine(postgres_cluster: PostgresCluster, postgres_database: str) -> PostgresEngine:
    """PostgreSQL alone, over an empty database: for what only it does (replicas, the server restarting)."""
    return PostgresEngine(postgres_cluster, postgres_database)


class BackgroundStore:
    """A started engine in an event loop of its own thread, as the storage service is in its own process.

    Tests call it from their loop (:meth:`call`, any number of ``asyncio.run`` in turn) or from
    synchronous helpers (:meth:`call_sync`); its watches wake on every commit made through it.
    """

    def __init__(self, engine: Engine) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-storage", daemon=True)
        self._thread.start()
        self.store: Storage = self.call_sync(engine.open())

    def call_sync(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=120)

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def close(self) -> None:
        try:
            self.call_sync(self.store.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


@contextlib.contextmanager
def background_store(request: pytest.FixtureRequest, engine_name: str, tmp_path: Path) -> Iterator[BackgroundStore]:
    """``engine_name``'s engine over an empty database, started in its own thread, closed at the end."""
    engine: Engine
    if engine_name == "sqlite":
        engine = SQLiteEngine(tmp_path / "storage" / "cloister.db")
    else:
        engine = PostgresEngine(
            request.getfixturevalue("postgres_cluster"), request.getfixturevalue("postgres_database")
        )
    store = BackgroundStore(engine)
    try:
        yield store
    finally:
        store.close()


class EngineStorage:
    """StorageClient's calls over a real engine in its own thread, with the in-memory fakes' helpers.

    The helpers read and write the real database (synchronously, through the same store, so its
    watches wake as they would for a commit over RPC).
    """

    def __init__(self, background: BackgroundStore) -> None:
        self._background = background
        self._store = background.store

    async def get(self, key: bytes) -> bytes | None:
        (value,) = await self.read([key])
        return None if value is None else value.value

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        assert len(keys) <= 1000
        return await self._background.call(self._store.read(keys))

    async def commit(self, ops: Sequence[Op]) -> Written:
        return written(ops, await self._background.call(self._store.commit(ops)))

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        return await self._background.call(self._store.keys_with_prefix(prefix))

    async def watch(self, key: bytes, after_version: int, timeout: float) -> Versioned | None:
        return await self._background.call(self._store.watch(key, after_version, timeout))

    async def watch_queue(self, queue: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        return await self._background.call(self._store.watch_queue(queue, after_seq, limit, timeout))

    # --- test helpers ------------------------------------------------------------------

    def json(self, key: bytes | str) -> Any:
        key = key.encode() if isinstance(key, str) else key
        value = self._background.call_sync(self._store.get(key))
        if value is None:
            raise KeyError(key)
        return json.loads(value.value)

    async def update_json(self, key: str, **fields: Any) -> None:
        """Rewrite fields of a stored record, as the scheduler would."""
        record = self.json(key)
        record.update(fields)
        await self.commit([Put(key.encode(), json.dumps(record).encode())])

    def queue_json(self, queue: bytes) -> list[Any]:
        items = self._background.call_sync(self._store.queue_items(queue, 0, 10_000))
        return [json.loads(item.value) for item in items]

    def put_json(self, key: bytes, value: object) -> None:
        self._background.call_sync(self._store.commit([Put(key, json.dumps(value).encode())]))

    def enqueue(self, queue: bytes, value: bytes) -> int:
        """Append to ``queue``; the element's sequence number."""
        self._background.call_sync(self._store.commit([Enqueue(queue, value)]))
        items = self._background.call_sync(self._store.queue_items(queue, 0, 1_000_000))
        return items[-1].seq
