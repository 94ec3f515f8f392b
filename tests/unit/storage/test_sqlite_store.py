"""The embedded store: atomic commits, versions, queues, watches, sealing, durability."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cloister.crypto.sealing import Sealer
from cloister.errors import ConflictError, InternalError, NotFoundError
from cloister.storage.ops import Ack, Check, Delete, Dequeue, Enqueue, Put
from cloister.storage.sqlite import SQLiteStore

KEY = bytes(range(32))


def open_store(path: Path) -> SQLiteStore:
    store = SQLiteStore(path, Sealer(KEY))
    store.start()
    return store


def test_put_get_delete_and_versions(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(tmp_path / "db")
        await store.commit([Put(b"task-1", b"a")])
        first = store.get(b"task-1")
        assert first is not None and first.value == b"a"
        await store.commit([Put(b"task-1", b"b")])
        second = store.get(b"task-1")
        assert second is not None and second.value == b"b" and second.version > first.version
        await store.commit([Delete(b"task-1"), Delete(b"absent")])
        assert store.get(b"task-1") is None
        store.close()

    asyncio.run(scenario())


def test_a_check_applies_the_commit_only_at_the_version_read(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(tmp_path / "db")
        await store.commit([Check(b"task-1", 0), Put(b"task-1", b"a")])  # 0: created only if absent
        read = store.get(b"task-1")
        assert read is not None
        await store.commit([Put(b"task-1", b"newer")])  # someone else's change after the read
        with pytest.raises(ConflictError):
            await store.commit([Check(b"task-1", read.version), Put(b"task-1", b"stale"), Enqueue(b"q", b"x")])
        assert store.get(b"task-1").value == b"newer"  # type: ignore[union-attr]
        assert store.queue_items(b"q", 0, 10) == []  # nothing of the refused commit applied
        with pytest.raises(ConflictError):
            await store.commit([Check(b"task-1", 0), Put(b"task-1", b"again")])
        current = store.get(b"task-1")
        assert current is not None
        await store.commit([Check(b"task-1", current.version), Put(b"task-1", b"fresh")])
        assert store.get(b"task-1").value == b"fresh"  # type: ignore[union-attr]
        store.close()

    asyncio.run(scenario())


def test_keys_with_prefix_matches_reference_example(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(tmp_path / "db")
        keys = [b"function-1", b"function-22", b"function-333", b"task-444", b"function-5"]
        await store.commit([Put(k, b"") for k in keys])
        assert store.keys_with_prefix(b"function") == [b"function-1", b"function-22", b"function-333", b"function-5"]
        assert store.keys_with_prefix(b"input") == []
        store.close()

    asyncio.run(scenario())


def test_failed_batch_leaves_nothing_and_does_not_harm_others(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(tmp_path / "db")
        good = store.commit([Put(b"a", b"1")])
        bad = store.commit([Put(b"b", b"2"), Dequeue(b"empty-queue")])
        results = await asyncio.gather(good, bad, return_exceptions=True)
        assert results[0] == [None]
        assert isinstance(results[1], NotFoundError)
        assert store.get(b"a") is not None
        assert store.get(b"b") is None
        store.close()

    asyncio.run(scenario())


def test_queue_fifo_ack_and_dequeue(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(tmp_path / "db")
        await store.commit([Enqueue(b"q", b"one"), Enqueue(b"q", b"two"), Enqueue(b"other", b"x")])
        items = store.queue_items(b"q", 0, 10)
        assert [i.value for i in items] == [b"one", b"two"]
        await store.commit([Ack(b"q", items[0].seq)])
        assert [i.value for i in store.queue_items(b"q", 0, 10)] == [b"two"]
        assert await store.commit([Dequeue(b"q")]) == [b"two"]
        with pytest.raises(NotFoundError):
            await store.commit([Dequeue(b"q")])
        store.close()

    asyncio.run(scenario())


def test_watch_wakes_on_change_and_times_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(tmp_path / "db")
        await store.commit([Put(b"k", b"v1")])
        current = store.get(b"k")
        assert current is not None
        unchanged = await store.watch(b"k", current.version, 0.05)
        assert unchanged is not None and unchanged.version == current.version
        waiter = asyncio.create_task(store.watch(b"k", current.version, 10))
        await asyncio.sleep(0)
        await store.commit([Put(b"k", b"v2")])
        changed = await asyncio.wait_for(waiter, 5)
        assert changed is not None and changed.value == b"v2"
        queue_waiter = asyncio.create_task(store.watch_queue(b"q", 0, 10, 10))
        await asyncio.sleep(0)
        await store.commit([Enqueue(b"q", b"item")])
        items = await asyncio.wait_for(queue_waiter, 5)
        assert [i.value for i in items] == [b"item"]
        store.close()

    asyncio.run(scenario())


def test_values_are_sealed_and_survive_reopening(tmp_path: Path) -> None:
    async def write() -> None:
        store = open_store(tmp_path / "db")
        await store.commit([Put(b"secret-key", b"plaintext-value"), Enqueue(b"q", b"queued-value")])
        store.close()

    asyncio.run(write())
    raw = (tmp_path / "db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("db-*"))
    assert b"plaintext-value" not in raw and b"queued-value" not in raw
    store = open_store(tmp_path / "db")
    value = store.get(b"secret-key")
    assert value is not None and value.value == b"plaintext-value"
    assert [i.value for i in store.queue_items(b"q", 0, 10)] == [b"queued-value"]
    store.close()


def test_tampered_or_moved_value_is_detected(tmp_path: Path) -> None:
    async def write() -> None:
        store = open_store(tmp_path / "db")
        await store.commit([Put(b"a", b"value-a"), Put(b"b", b"value-b")])
        store.close()

    asyncio.run(write())
    db = sqlite3.connect(tmp_path / "db")
    sealed_a = db.execute("SELECT value FROM kv WHERE key = ?", (b"a",)).fetchone()[0]
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (sealed_a, b"b"))
    db.commit()
    db.close()
    store = open_store(tmp_path / "db")
    with pytest.raises(InternalError, match="integrity"):
        store.get(b"b")
    store.close()
