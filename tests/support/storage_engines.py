"""Both storage engines, opened the same way, for tests parametrised over them (``storage_engine``)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest
from postgres_cluster import PostgresCluster

from cloister.crypto.sealing import Sealer
from cloister.storage.engine import Storage
from cloister.storage.postgres import PostgresStore
from cloister.storage.sqlite import SQLiteStorage, SQLiteStore

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
