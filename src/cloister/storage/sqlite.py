"""The embedded backend: SQLite in WAL mode, one writer thread with group commit.

Every acknowledged write has been fsynced (``synchronous=FULL``). Concurrent commits that
arrive while one is being written are applied together in the next transaction, each inside
its own savepoint, so one fsync serves many writers without one batch's failure touching
another's. Reads run on the event loop's thread from a separate connection: in WAL mode they
never wait for the writer.

When the disk is full SQLite rolls the whole transaction back (``SQLITE_FULL``): every write of
the group fails with :class:`~cloister.errors.DiskFullError`, nothing stored before is touched,
and the next group, once space is freed, commits as usual. The write-ahead log is checkpointed
every ``_WAL_AUTOCHECKPOINT_PAGES`` and cut back to ``_JOURNAL_SIZE_LIMIT`` bytes afterwards, so
it does not keep the size of its largest burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cloister.crypto.sealing import Sealer
from cloister.errors import ConflictError, DiskFullError, NotFoundError, is_disk_full
from cloister.storage.ops import (
    Ack,
    Check,
    CheckValue,
    Claim,
    Delete,
    Dequeue,
    Enqueue,
    Extend,
    Lease,
    Op,
    OpResult,
    Put,
    QueueItem,
    Versioned,
    check_lease_seconds,
)

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queue_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue BLOB NOT NULL, value BLOB NOT NULL,
    lease_id BLOB, lease_until REAL
);
CREATE INDEX IF NOT EXISTS queue_items_by_queue ON queue_items (queue, seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_MAX_GROUP = 256
_WAL_AUTOCHECKPOINT_PAGES = 1000
_JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024
"""Bytes the write-ahead log is truncated to after a checkpoint (SQLite's default keeps it all)."""


class _Batch:
    __slots__ = ("future", "loop", "ops")

    def __init__(self, ops: Sequence[Op], loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
        self.ops = ops
        self.loop = loop
        self.future = future


class SQLiteStore:
    def __init__(self, path: Path, sealer: Sealer, service: str = "storage") -> None:
        """Open (creating) the database at ``path``; ``service`` names the owner in disk-full errors."""
        self._path = path
        self._service = service
        self._disk_full = False
        """Whether the last group failed for want of space (so the episode is logged once)."""
        self._sealer = sealer
        self._pending: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._key_waiters: dict[bytes, set[asyncio.Event]] = {}
        self._queue_waiters: dict[bytes, set[asyncio.Event]] = {}
        self._writer: threading.Thread | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(path.parent, 0o700)
        self._write_db = self._connect()
        self._write_db.executescript(_SCHEMA)
        columns = {row[1] for row in self._write_db.execute("PRAGMA table_info(queue_items)")}
        if "lease_id" not in columns:  # a database from before queue leases
            self._write_db.executescript(
                "BEGIN; ALTER TABLE queue_items ADD COLUMN lease_id BLOB;"
                " ALTER TABLE queue_items ADD COLUMN lease_until REAL; COMMIT;"
            )
        row = self._write_db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
        self._version = row[0] if row else 0
        os.chmod(path, 0o600)
        self._read_db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")
        return db

    def start(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="storage-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._pending.put(None)
            self._writer.join()
            self._writer = None
        self._read_db.close()
        self._write_db.close()

    # --- reads -------------------------------------------------------------------------

    def get(self, key: bytes) -> Versioned | None:
        row = self._read_db.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else Versioned(self._sealer.unseal(row[0], key), row[1])

    def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        """Several keys from one snapshot."""
        self._read_db.execute("BEGIN")
        try:
            return [self.get(key) for key in keys]
        finally:
            self._read_db.execute("COMMIT")

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Keys starting with ``prefix + b"-"``, in byte order (reference §9.4, without its stray key)."""
        low, high = prefix + b"-", prefix + b"."
        rows = self._read_db.execute("SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key", (low, high))
        return [bytes(r[0]) for r in rows]

    def queue_items(self, name: bytes, after_seq: int, limit: int) -> list[QueueItem]:
        rows = self._read_db.execute(
            "SELECT seq, value FROM queue_items WHERE queue = ? AND seq > ? ORDER BY seq LIMIT ?",
            (name, after_seq, limit),
        )
        return [QueueItem(seq, self._sealer.unseal(value, name)) for seq, value in rows]

    # --- writes ------------------------------------------------------------------------

    async def commit(self, ops: Sequence[Op]) -> list[OpResult]:
        """Apply ``ops`` atomically and durably; one result per op (a Dequeue's value)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[OpResult]] = loop.create_future()
        self._pending.put(_Batch(ops, loop, future))
        return await future

    def _write_loop(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < _MAX_GROUP:
                try:
                    nxt = self._pending.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            self._write_group(group)
            if stop:
                return

    def _write_group(self, group: list[_Batch]) -> None:
        db = self._write_db
        outcomes: list[tuple[_Batch, list[OpResult] | BaseException]] = []
        keys: set[bytes] = set()
        queues: set[bytes] = set()
        version_at_start = self._version
        try:
            db.execute("BEGIN IMMEDIATE")
            for batch in group:
                db.execute("SAVEPOINT batch")
                version_before = self._version
                try:
                    results = [self._apply(db, op, keys, queues) for op in batch.ops]
                except Exception as exc:
                    if not db.in_transaction:
                        raise  # SQLite rolled the whole transaction back (a full disk, say)
                    db.execute("ROLLBACK TO batch")
                    db.execute("RELEASE batch")
                    self._version = version_before
                    outcomes.append((batch, exc))
                    continue
                db.execute("RELEASE batch")
                outcomes.append((batch, results))
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('version', ?)", (self._version,))
            db.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            self._version = version_at_start
            error = self._full_disk() if _disk_full(exc) else exc
            if error is exc:
                logger.exception("storage commit failed")
            outcomes = [(batch, error) for batch in group]
            keys.clear()
            queues.clear()
        else:
            if self._disk_full:
                self._disk_full = False
                logger.warning("the disk holding %s has room again; writes succeed", self._path.parent)
        loops = {batch.loop for batch in group}
        for loop in loops:
            mine = [(b, r) for b, r in outcomes if b.loop is loop]
            loop.call_soon_threadsafe(self._finish, mine, frozenset(keys), frozenset(queues))

    def _full_disk(self) -> DiskFullError:
        """The error for a write refused for want of space; the first of an episode is logged with the path."""
        if not self._disk_full:
            self._disk_full = True
            try:
                free = f"{shutil.disk_usage(self._path.parent).free} bytes free"
            except OSError:
                free = "free space unknown"
            logger.error(
                "the disk holding %s is full (%s): writes fail until space is freed; stored data is intact",
                self._path.parent,
                free,
            )
        return DiskFullError.of(self._service)

    def _apply(self, db: sqlite3.Connection, op: Op, keys: set[bytes], queues: set[bytes]) -> OpResult:
        if isinstance(op, Put):
            self._version += 1
            db.execute(
                "INSERT OR REPLACE INTO kv (key, value, version) VALUES (?, ?, ?)",
                (op.key, self._sealer.seal(op.value, op.key), self._version),
            )
            keys.add(op.key)
            return self._version
        elif isinstance(op, Delete):
            self._version += 1
            db.execute("DELETE FROM kv WHERE key = ?", (op.key,))
            keys.add(op.key)
        elif isinstance(op, Enqueue):
            db.execute(
                "INSERT INTO queue_items (queue, value) VALUES (?, ?)",
                (op.queue, self._sealer.seal(op.value, op.queue)),
            )
            queues.add(op.queue)
        elif isinstance(op, Ack):
            db.execute("DELETE FROM queue_items WHERE queue = ? AND seq = ?", (op.queue, op.seq))
        elif isinstance(op, Dequeue):
            row = db.execute(
                "SELECT seq, value FROM queue_items WHERE queue = ? AND (lease_until IS NULL OR lease_until <= ?)"
                " ORDER BY seq LIMIT 1",
                (op.queue, time.time()),
            ).fetchone()
            if row is None:
                raise NotFoundError("queue is empty")
            db.execute("DELETE FROM queue_items WHERE seq = ?", (row[0],))
            return self._sealer.unseal(row[1], op.queue)
        elif isinstance(op, Claim):
            now = time.time()
            until = now + check_lease_seconds(op.lease_seconds)
            row = db.execute(
                "SELECT seq, value FROM queue_items WHERE queue = ? AND (lease_until IS NULL OR lease_until <= ?)"
                " ORDER BY seq LIMIT 1",
                (op.queue, now),
            ).fetchone()
            if row is None:
                raise NotFoundError("no element of the queue is free to claim")
            lease_id = os.urandom(16)
            db.execute("UPDATE queue_items SET lease_id = ?, lease_until = ? WHERE seq = ?", (lease_id, until, row[0]))
            return Lease(row[0], self._sealer.unseal(row[1], op.queue), lease_id)
        elif isinstance(op, Extend):
            until = time.time() + check_lease_seconds(op.lease_seconds)
            updated = db.execute(
                "UPDATE queue_items SET lease_until = ? WHERE queue = ? AND seq = ? AND lease_id = ?",
                (until, op.queue, op.seq, op.lease_id),
            )
            if updated.rowcount != 1:
                raise ConflictError(f"the lease on element {op.seq} of its queue was lost")
        elif isinstance(op, Check):
            row = db.execute("SELECT version FROM kv WHERE key = ?", (op.key,)).fetchone()
            if (0 if row is None else row[0]) != op.version:
                raise ConflictError(f"{op.key.decode(errors='replace')} changed since it was read")
        elif isinstance(op, CheckValue):
            row = db.execute("SELECT value FROM kv WHERE key = ?", (op.key,)).fetchone()
            if row is None or hashlib.sha256(self._sealer.unseal(row[0], op.key)).digest() != op.sha256:
                raise ConflictError(f"{op.key.decode(errors='replace')} is not the value it was decided on")
        else:  # pragma: no cover - the Op union is closed
            raise TypeError(f"unknown storage op {op!r}")
        return None

    def _finish(
        self,
        outcomes: list[tuple[_Batch, list[OpResult] | BaseException]],
        keys: frozenset[bytes],
        queues: frozenset[bytes],
    ) -> None:
        for batch, result in outcomes:
            if batch.future.done():
                continue
            if isinstance(result, BaseException):
                batch.future.set_exception(result)
            else:
                batch.future.set_result(result)
        for key in keys:
            for event in self._key_waiters.get(key, ()):
                event.set()
        for name in queues:
            for event in self._queue_waiters.get(name, ()):
                event.set()

    # --- watches -----------------------------------------------------------------------

    async def watch(self, key: bytes, after_version: int, timeout: float) -> Versioned | None:
        """The key's value once its version passes ``after_version`` (or at ``timeout``)."""
        current = self.get(key)
        if _changed(current, after_version) or timeout <= 0:
            return current
        await _wait(self._key_waiters, key, timeout)
        return self.get(key)

    async def watch_queue(self, name: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        """Elements after ``after_seq``, waiting up to ``timeout`` for the first one."""
        items = self.queue_items(name, after_seq, limit)
        if items or timeout <= 0:
            return items
        await _wait(self._queue_waiters, name, timeout)
        return self.queue_items(name, after_seq, limit)


async def _wait(waiters: dict[bytes, set[asyncio.Event]], name: bytes, timeout: float) -> None:
    """Until the next commit that touches ``name``, or ``timeout``."""
    event = asyncio.Event()
    waiting = waiters.setdefault(name, set())
    waiting.add(event)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # not wait_for, which can lose a cancellation on 3.11
                await event.wait()
    finally:
        waiting.discard(event)
        if not waiting:
            waiters.pop(name, None)


def _disk_full(exc: BaseException) -> bool:
    """Whether SQLite or the OS refused a write for want of space."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return is_disk_full(exc)


def _changed(current: Versioned | None, after_version: int) -> bool:
    if current is None:
        return after_version > 0
    return current.version > after_version


class SQLiteStorage:
    """:class:`SQLiteStore` as a :class:`~cloister.storage.engine.Storage`.

    Reads stay synchronous underneath: in WAL mode they never wait for the writer, so they run on
    the event loop's thread as they always have, and this adapter only gives them the engine's
    shape. Authentication's user store and offline tools keep using :class:`SQLiteStore` directly.
    """

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def start(self) -> None:
        self.store.start()

    async def close(self) -> None:
        self.store.close()

    async def get(self, key: bytes) -> Versioned | None:
        return self.store.get(key)

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        return self.store.read(keys)

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        return self.store.keys_with_prefix(prefix)

    async def queue_items(self, name: bytes, after_seq: int, limit: int) -> list[QueueItem]:
        return self.store.queue_items(name, after_seq, limit)

    async def commit(self, ops: Sequence[Op]) -> list[OpResult]:
        return await self.store.commit(ops)

    async def watch(self, key: bytes, after_version: int, timeout: float) -> Versioned | None:
        return await self.store.watch(key, after_version, timeout)

    async def watch_queue(self, name: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        return await self.store.watch_queue(name, after_seq, limit, timeout)
