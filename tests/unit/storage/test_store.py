"""Both storage engines: atomic commits, versions, queues, watches, sealing, durability.

Every test runs against SQLite and against a real PostgreSQL server (``storage_engine``).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from storage_engines import Engine, PostgresEngine, SQLiteEngine

from cloister.errors import (
    ConfigurationError,
    ConflictError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from cloister.storage.engine import Storage
from cloister.storage.ops import Ack, Check, CheckValue, Claim, Delete, Dequeue, Enqueue, Extend, Lease, Put


def run(engine: Engine, scenario: Callable[[Storage], Awaitable[None]]) -> None:
    async def main() -> None:
        store = await engine.open()
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_put_get_delete_and_versions(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Put(b"task-1", b"a")])
        first = await store.get(b"task-1")
        assert first is not None and first.value == b"a"
        await store.commit([Put(b"task-1", b"b")])
        second = await store.get(b"task-1")
        assert second is not None and second.value == b"b" and second.version > first.version
        await store.commit([Put(b"task-2", b"c")])
        other = await store.get(b"task-2")
        assert other is not None and other.version > second.version  # versions grow across the store
        await store.commit([Delete(b"task-1"), Delete(b"absent")])
        assert await store.get(b"task-1") is None
        assert await store.read([b"task-2", b"task-1", b"task-2"]) == [other, None, other]

    run(storage_engine, scenario)


def test_a_check_applies_the_commit_only_at_the_version_read(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Check(b"task-1", 0), Put(b"task-1", b"a")])  # 0: created only if absent
        read = await store.get(b"task-1")
        assert read is not None
        await store.commit([Put(b"task-1", b"newer")])  # someone else's change after the read
        with pytest.raises(ConflictError):
            await store.commit([Check(b"task-1", read.version), Put(b"task-1", b"stale"), Enqueue(b"q", b"x")])
        assert (await store.get(b"task-1")).value == b"newer"  # type: ignore[union-attr]
        assert await store.queue_items(b"q", 0, 10) == []  # nothing of the refused commit applied
        with pytest.raises(ConflictError):
            await store.commit([Check(b"task-1", 0), Put(b"task-1", b"again")])
        current = await store.get(b"task-1")
        assert current is not None
        await store.commit([Check(b"task-1", current.version), Put(b"task-1", b"fresh")])
        assert (await store.get(b"task-1")).value == b"fresh"  # type: ignore[union-attr]

    run(storage_engine, scenario)


def test_concurrent_checked_writers_of_one_key_never_both_win(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Put(b"counter", b"0")])
        start = await store.get(b"counter")
        assert start is not None
        attempts = [
            store.commit([Check(b"counter", start.version), Put(b"counter", str(n).encode())]) for n in range(8)
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        won = [o for o in outcomes if not isinstance(o, ConflictError)]
        assert len(won) == 1
        stored = await store.get(b"counter")
        assert stored is not None
        # The winner is told the version its put gave the key: the one stored now, above the one checked.
        assert won[0] == [None, stored.version] and stored.version > start.version

    run(storage_engine, scenario)


def test_a_commit_gives_the_version_of_each_put_and_nothing_for_other_ops(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        results = await store.commit([Put(b"a", b"1"), Enqueue(b"q", b"x"), Put(b"b", b"2"), Put(b"a", b"3")])
        a, b = await store.get(b"a"), await store.get(b"b")
        assert a is not None and b is not None
        assert results == [results[0], None, b.version, a.version]
        assert isinstance(results[0], int) and results[0] < b.version < a.version
        assert a.value == b"3"

    run(storage_engine, scenario)


def test_a_value_check_applies_a_commit_only_while_the_key_holds_that_value(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Put(b"task", b"staged")])
        staged = hashlib.sha256(b"staged").digest()
        await store.commit([CheckValue(b"task", staged), Put(b"task", b"running")])
        for check in (CheckValue(b"task", staged), CheckValue(b"absent", staged)):
            with pytest.raises(ConflictError):
                await store.commit([check, Put(b"task", b"written over"), Enqueue(b"q", b"x")])
        stored = await store.get(b"task")
        assert stored is not None and stored.value == b"running"
        assert await store.queue_items(b"q", 0, 10) == []

    run(storage_engine, scenario)


def test_keys_with_prefix_matches_reference_example(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        keys = [b"function-1", b"function-22", b"function-333", b"task-444", b"function-5"]
        await store.commit([Put(k, b"") for k in keys])
        assert await store.keys_with_prefix(b"function") == [
            b"function-1",
            b"function-22",
            b"function-333",
            b"function-5",
        ]
        assert await store.keys_with_prefix(b"input") == []

    run(storage_engine, scenario)


def test_failed_batch_leaves_nothing_and_does_not_harm_others(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        good = store.commit([Put(b"a", b"1")])
        bad = store.commit([Put(b"b", b"2"), Dequeue(b"empty-queue")])
        results = await asyncio.gather(good, bad, return_exceptions=True)
        assert isinstance(results[0], list) and isinstance(results[0][0], int)
        assert isinstance(results[1], NotFoundError)
        assert await store.get(b"a") is not None
        assert await store.get(b"b") is None

    run(storage_engine, scenario)


def test_queue_fifo_ack_and_dequeue(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Enqueue(b"q", b"one"), Enqueue(b"q", b"two"), Enqueue(b"other", b"x")])
        items = await store.queue_items(b"q", 0, 10)
        assert [i.value for i in items] == [b"one", b"two"]
        assert items[0].seq < items[1].seq
        assert [i.value for i in await store.queue_items(b"q", items[0].seq, 10)] == [b"two"]
        await store.commit([Ack(b"q", items[0].seq)])
        assert [i.value for i in await store.queue_items(b"q", 0, 10)] == [b"two"]
        assert await store.commit([Dequeue(b"q")]) == [b"two"]
        with pytest.raises(NotFoundError):
            await store.commit([Dequeue(b"q")])
        assert [i.value for i in await store.queue_items(b"other", 0, 10)] == [b"x"]

    run(storage_engine, scenario)


def test_concurrent_dequeues_take_each_element_once(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Enqueue(b"q", str(n).encode()) for n in range(20)])
        outcomes = await asyncio.gather(*(store.commit([Dequeue(b"q")]) for _ in range(25)), return_exceptions=True)
        taken = [o[0] for o in outcomes if isinstance(o, list)]
        assert sorted(taken, key=int) == [str(n).encode() for n in range(20)]  # type: ignore[arg-type]
        assert sum(isinstance(o, NotFoundError) for o in outcomes) == 5

    run(storage_engine, scenario)


def test_watch_wakes_on_change_and_times_out(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Put(b"k", b"v1")])
        current = await store.get(b"k")
        assert current is not None
        unchanged = await store.watch(b"k", current.version, 0.05)
        assert unchanged is not None and unchanged.version == current.version
        waiter = asyncio.create_task(store.watch(b"k", current.version, 10))
        await asyncio.sleep(0.05)
        await store.commit([Put(b"k", b"v2")])
        changed = await asyncio.wait_for(waiter, 5)
        assert changed is not None and changed.value == b"v2"
        queue_waiter = asyncio.create_task(store.watch_queue(b"q", 0, 10, 10))
        await asyncio.sleep(0.05)
        await store.commit([Enqueue(b"q", b"item")])
        items = await asyncio.wait_for(queue_waiter, 5)
        assert [i.value for i in items] == [b"item"]
        deleted = asyncio.create_task(store.watch(b"k", changed.version, 10))
        await asyncio.sleep(0.05)
        await store.commit([Delete(b"k")])
        assert await asyncio.wait_for(deleted, 5) is None

    run(storage_engine, scenario)


def test_a_watch_wakes_on_another_replica_s_commit(postgres_engine: PostgresEngine) -> None:
    """Two storage processes over one database (SQLite has one storage process)."""

    async def main() -> None:
        watcher, writer = await postgres_engine.open(), await postgres_engine.open()
        try:
            await writer.commit([Put(b"task-1", b"v1")])
            current = await watcher.get(b"task-1")
            assert current is not None
            waiter = asyncio.create_task(watcher.watch(b"task-1", current.version, 20))
            queue_waiter = asyncio.create_task(watcher.watch_queue(b"staged-task", 0, 10, 20))
            await asyncio.sleep(0.1)
            await writer.commit([Put(b"task-1", b"v2"), Enqueue(b"staged-task", b"job")])
            changed = await asyncio.wait_for(waiter, 10)
            assert changed is not None and changed.value == b"v2"
            assert [i.value for i in await asyncio.wait_for(queue_waiter, 10)] == [b"job"]
        finally:
            await watcher.close()
            await writer.close()

    asyncio.run(main())


def test_values_survive_reopening(storage_engine: Engine) -> None:
    async def write(store: Storage) -> None:
        await store.commit([Put(b"secret-key", b"plaintext-value"), Enqueue(b"q", b"queued-value")])

    async def check(store: Storage) -> None:
        value = await store.get(b"secret-key")
        assert value is not None and value.value == b"plaintext-value"
        assert [i.value for i in await store.queue_items(b"q", 0, 10)] == [b"queued-value"]

    run(storage_engine, write)
    run(storage_engine, check)


def test_sqlite_values_are_sealed_and_moved_values_detected(tmp_path: Path) -> None:
    engine = SQLiteEngine(tmp_path / "db")

    async def write(store: Storage) -> None:
        await store.commit([Put(b"a", b"plaintext-value"), Put(b"b", b"value-b"), Enqueue(b"q", b"queued-value")])

    run(engine, write)
    raw = engine.path.read_bytes() + b"".join(p.read_bytes() for p in engine.path.parent.glob("db-*"))
    assert b"plaintext-value" not in raw and b"queued-value" not in raw
    db = sqlite3.connect(engine.path)
    sealed_a = db.execute("SELECT value FROM kv WHERE key = ?", (b"a",)).fetchone()[0]
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (sealed_a, b"b"))
    db.commit()
    db.close()

    async def check(store: Storage) -> None:
        with pytest.raises(InternalError, match="integrity"):
            await store.get(b"b")

    run(engine, check)


def test_postgres_holds_no_plaintext_and_detects_moved_or_rolled_back_values(postgres_engine: PostgresEngine) -> None:
    """What a database operator sees, and what tampering the sealing catches.

    Visible: keys (as in SQLite's file) and queue names; never a value, in the tables or in the
    notifications replicas exchange.
    """
    engine = postgres_engine
    database = engine.database

    async def write(store: Storage) -> None:
        await store.commit([Put(b"task-a", b"plaintext-value"), Put(b"task-b", b"value-b")])
        await store.commit([Put(b"task-a", b"second-value"), Enqueue(b"staged-task", b"queued-value")])
        await store.commit([Enqueue(b"staged-task", b"queued-two")])

    run(engine, write)
    dump = engine.cluster.psql(
        "SELECT encode(key, 'escape'), encode(value, 'escape'), version FROM cloister_kv;"
        "SELECT encode(queue, 'escape'), encode(value, 'escape') FROM cloister_queue_items",
        database,
    )
    for plaintext in ("plaintext-value", "second-value", "value-b", "queued-value", "queued-two"):
        assert plaintext not in dump
    assert "task-a" in dump and "staged-task" in dump  # keys and queue names are what the operator sees

    # A value copied to another row, and an older value put back under the row's current version:
    engine.cluster.psql(
        "UPDATE cloister_kv SET value = (SELECT value FROM cloister_kv WHERE key = 'task-a'::bytea) "
        "WHERE key = 'task-b'::bytea",
        database,
    )
    swapped = engine.cluster.psql("SELECT seq FROM cloister_queue_items ORDER BY seq", database).split()
    engine.cluster.psql(
        f"UPDATE cloister_queue_items SET seq = CASE seq WHEN {swapped[0]} THEN -1 ELSE seq END;"
        f"UPDATE cloister_queue_items SET seq = {swapped[0]} WHERE seq = {swapped[1]};"
        f"UPDATE cloister_queue_items SET seq = {swapped[1]} WHERE seq = -1",
        database,
    )

    async def check(store: Storage) -> None:
        with pytest.raises(InternalError, match="integrity"):
            await store.get(b"task-b")
        with pytest.raises(InternalError, match="integrity"):
            await store.queue_items(b"staged-task", 0, 10)

    run(engine, check)

    async def rewrite(store: Storage) -> None:
        await store.commit([Put(b"task-c", b"old"), Put(b"task-c", b"new")])

    run(engine, rewrite)
    old_value = engine.cluster.psql(
        "SELECT encode(value, 'hex') FROM cloister_kv WHERE key = 'task-c'::bytea", database
    )
    run(engine, lambda store: store.commit([Put(b"task-c", b"newest")]))  # type: ignore[arg-type,return-value]
    engine.cluster.psql(
        f"UPDATE cloister_kv SET value = decode('{old_value.strip()}', 'hex') WHERE key = 'task-c'::bytea", database
    )

    async def check_rollback(store: Storage) -> None:
        with pytest.raises(InternalError, match="integrity"):
            await store.get(b"task-c")

    run(engine, check_rollback)


def test_a_watch_wakes_without_a_notification(postgres_engine: PostgresEngine) -> None:
    """Notifications are hints: a change that sends none (here: a row deleted by hand) is found by polling."""

    async def main() -> None:
        store = await postgres_engine.open()
        try:
            await store.commit([Put(b"task-1", b"v1")])
            current = await store.get(b"task-1")
            assert current is not None
            waiter = asyncio.create_task(store.watch(b"task-1", current.version, 30))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(
                postgres_engine.cluster.psql,
                "DELETE FROM cloister_kv WHERE key = 'task-1'::bytea",
                postgres_engine.database,
            )
            assert await asyncio.wait_for(waiter, 10) is None
        finally:
            await store.close()

    asyncio.run(main())


def test_a_server_restart_is_survived(postgres_engine: PostgresEngine) -> None:
    """Down: commits fail UNAVAILABLE, saying so. Back: the pool reconnects, commits and watches work."""
    cluster = postgres_engine.cluster

    async def main() -> None:
        watcher, writer = await postgres_engine.open(), await postgres_engine.open()
        try:
            await writer.commit([Put(b"task-1", b"before")])
            await asyncio.to_thread(cluster.stop)
            with pytest.raises(UnavailableError, match="cannot be reached"):
                await writer.commit([Put(b"task-1", b"during")])
            await asyncio.to_thread(cluster.start)
            await writer.commit([Put(b"task-1", b"after")])
            current = await watcher.get(b"task-1")
            assert current is not None and current.value == b"after"
            waiter = asyncio.create_task(watcher.watch(b"task-1", current.version, 30))
            await asyncio.sleep(0.1)
            await writer.commit([Put(b"task-1", b"watched"), Enqueue(b"q", b"x")])
            changed = await asyncio.wait_for(waiter, 10)
            assert changed is not None and changed.value == b"watched"
            assert [i.value for i in await watcher.queue_items(b"q", 0, 10)] == [b"x"]
        finally:
            await watcher.close()
            await writer.close()

    asyncio.run(main())


def test_replicas_starting_together_migrate_once(postgres_engine: PostgresEngine) -> None:
    async def main() -> None:
        stores = await asyncio.gather(*(postgres_engine.open() for _ in range(4)))
        for store in stores:
            await store.close()

    asyncio.run(main())
    versions = postgres_engine.cluster.psql(
        "SELECT version FROM cloister_schema ORDER BY version", postgres_engine.database
    )
    assert versions.split() == ["1", "2"]  # each migration applied once


def test_a_database_newer_than_this_cloister_is_refused(postgres_engine: PostgresEngine) -> None:
    async def main() -> None:
        await (await postgres_engine.open()).close()
        postgres_engine.cluster.psql("INSERT INTO cloister_schema (version) VALUES (99)", postgres_engine.database)
        with pytest.raises(ConfigurationError, match="schema is version 99"):
            await postgres_engine.open()

    asyncio.run(main())


def test_a_claim_leases_the_oldest_free_element_until_acked_or_expired(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Enqueue(b"q", b"one"), Enqueue(b"q", b"two")])
        (first,) = await store.commit([Claim(b"q", 60)])
        (second,) = await store.commit([Claim(b"q", 60)])
        assert isinstance(first, Lease) and isinstance(second, Lease)
        assert (first.value, second.value) == (b"one", b"two") and first.lease_id != second.lease_id
        with pytest.raises(NotFoundError):  # both held
            await store.commit([Claim(b"q", 60)])
        with pytest.raises(NotFoundError):  # a Dequeue does not take a leased element either
            await store.commit([Dequeue(b"q")])
        assert [i.value for i in await store.queue_items(b"q", 0, 10)] == [b"one", b"two"]  # still queued
        await store.commit([Extend(b"q", first.seq, first.lease_id, 60)])  # a heartbeat
        with pytest.raises(ConflictError, match="lease"):
            await store.commit([Extend(b"q", first.seq, second.lease_id, 60)])  # not its lease
        await store.commit([Ack(b"q", first.seq)])
        with pytest.raises(ConflictError, match="lease"):
            await store.commit([Extend(b"q", first.seq, first.lease_id, 60)])  # gone
        assert [i.value for i in await store.queue_items(b"q", 0, 10)] == [b"two"]

    run(storage_engine, scenario)


def test_an_expired_lease_lets_another_worker_claim_the_element(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Enqueue(b"q", b"job")])
        (lost,) = await store.commit([Claim(b"q", 0.2)])  # a worker that then dies
        assert isinstance(lost, Lease)
        await asyncio.sleep(0.5)
        (again,) = await store.commit([Claim(b"q", 60)])
        assert isinstance(again, Lease) and again.seq == lost.seq and again.value == b"job"
        with pytest.raises(ConflictError):  # the first worker, back, finds its lease taken
            await store.commit([Extend(b"q", lost.seq, lost.lease_id, 60)])
        await store.commit([Extend(b"q", again.seq, again.lease_id, 60), Ack(b"q", again.seq)])
        assert await store.queue_items(b"q", 0, 10) == []

    run(storage_engine, scenario)


def test_concurrent_claims_take_distinct_elements(storage_engine: Engine) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Enqueue(b"q", str(n).encode()) for n in range(10)])
        outcomes = await asyncio.gather(*(store.commit([Claim(b"q", 60)]) for _ in range(12)), return_exceptions=True)
        leases = [o[0] for o in outcomes if isinstance(o, list)]
        assert sorted(lease.seq for lease in leases) == sorted(i.seq for i in await store.queue_items(b"q", 0, 20))  # type: ignore[union-attr]
        assert sum(isinstance(o, NotFoundError) for o in outcomes) == 2

    run(storage_engine, scenario)


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), 10**9])
def test_a_lease_length_must_be_usable(storage_engine: Engine, seconds: float) -> None:
    async def scenario(store: Storage) -> None:
        await store.commit([Enqueue(b"q", b"job")])
        with pytest.raises(InvalidArgumentError):
            await store.commit([Claim(b"q", seconds)])
        assert [i.value for i in await store.queue_items(b"q", 0, 10)] == [b"job"]

    run(storage_engine, scenario)


def test_a_database_from_before_leases_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL);"
        "CREATE TABLE queue_items (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue BLOB NOT NULL, value BLOB NOT NULL);"
    )
    old.close()

    async def scenario(store: Storage) -> None:
        await store.commit([Enqueue(b"q", b"job")])
        (lease,) = await store.commit([Claim(b"q", 60)])
        assert isinstance(lease, Lease) and lease.value == b"job"

    run(SQLiteEngine(path), scenario)
