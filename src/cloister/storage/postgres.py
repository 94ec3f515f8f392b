"""The PostgreSQL engine: several storage replicas over one database, values sealed before they leave.

What the database operator sees: keys (as the SQLite file shows them), value sizes, versions,
queue names and sequence numbers; never a value. Each value is sealed with the storage key
(:mod:`cloister.crypto.sealing`) and bound, as associated data, to its key and version (a queue
element: to its queue and sequence number). A value copied into another row, an older value put
back under the row's current version, or queue elements swapped therefore fail their integrity
check, and the read fails closed. What binding cannot catch: a whole row (value *and* version)
rolled back to an earlier state, or a row or queue element deleted; only a counter kept outside
the database could, and the storage service keeps none.

Transactions are short: a commit first takes transaction-scoped advisory locks on every key and
queue it writes, in sorted order (so two commits never deadlock, and a key that does not exist
yet is locked too), then applies its ops in order and commits. Versions come from one sequence,
so they grow across the store; queue sequence numbers come from another, drawn while the queue's
lock is held, so within a queue they are committed in order and a reader going "after seq N"
never skips an element committed late. A Dequeue takes the oldest element ``FOR UPDATE SKIP
LOCKED``, so concurrent consumers do not wait on each other; so does a Claim, which leases the
element instead (its lease ends by the database's clock, the same for every replica).

Watches wait on local events. A commit wakes this process's waiters directly and then sends one
``NOTIFY`` (outside its transaction, so a busy commit does not hold the notification lock) whose
payload is a hash of the key or queue name, never the name; every replica LISTENs and wakes its
own waiters. A notification is only a hint: each waiter also re-reads at least every
:data:`POLL_SECONDS`, so a lost notification (a dropped listening connection, a crash between
commit and NOTIFY) delays a wake-up by at most that long and never loses it.

The schema is versioned in ``cloister_schema``; :data:`_MIGRATIONS` are applied at start in one
transaction under an advisory lock, so replicas starting together do not race. A small list of
SQL scripts was preferred to a migration tool: there are two tables, and no tool would run inside
the storage service's own start-up transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cloister.crypto.sealing import Sealer
from cloister.errors import (
    CloisterError,
    ConfigurationError,
    ConflictError,
    DiskFullError,
    InternalError,
    NotFoundError,
    UnavailableError,
)
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

POLL_SECONDS = 1.0
"""The longest a watch waits between reads when no notification wakes it."""
CHANNEL = "cloister_wake"
"""The one notification channel; payloads are hashes (:func:`wake_token`), never key names."""
_RETRIES = 8
"""Attempts of a commit that lost a serialization race or a deadlock check before it fails."""
_SCHEMA_LOCK = (0x636C6F69, 1)
"""The advisory lock (two-int form, apart from the keys' one-bigint locks) migrations run under."""
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE cloister_kv (key bytea PRIMARY KEY, value bytea NOT NULL, version bigint NOT NULL);
    CREATE SEQUENCE cloister_version AS bigint;
    CREATE TABLE cloister_queue_items (seq bigint PRIMARY KEY, queue bytea NOT NULL, value bytea NOT NULL);
    CREATE INDEX cloister_queue_items_by_queue ON cloister_queue_items (queue, seq);
    CREATE SEQUENCE cloister_queue_seq AS bigint;
    """,
    """
    ALTER TABLE cloister_queue_items ADD COLUMN lease_id bytea, ADD COLUMN lease_until timestamptz;
    """,
)
"""Schema version N is reached by applying script N-1; append, never edit."""


_DEQUEUE = (
    "DELETE FROM cloister_queue_items WHERE seq = ("
    " SELECT seq FROM cloister_queue_items WHERE queue = %s"
    " AND (lease_until IS NULL OR lease_until <= clock_timestamp())"
    " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED"
    ") RETURNING seq, value"
)
"""Takes the oldest element of a queue that no live lease holds and no other transaction is taking."""
_CLAIM = (
    "UPDATE cloister_queue_items SET lease_id = %s, lease_until = clock_timestamp() + make_interval(secs => %s)"
    " WHERE seq = ("
    " SELECT seq FROM cloister_queue_items WHERE queue = %s"
    " AND (lease_until IS NULL OR lease_until <= clock_timestamp())"
    " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED"
    ") RETURNING seq, value"
)
"""Leases the element :data:`_DEQUEUE` would take."""


def kv_context(key: bytes, version: int) -> bytes:
    """Associated data of a stored value: its version (fixed width, first) and its key."""
    return b"cloister-kv\x00" + version.to_bytes(8, "big") + key


def queue_context(queue: bytes, seq: int) -> bytes:
    """Associated data of a queue element: its sequence number and its queue."""
    return b"cloister-queue\x00" + seq.to_bytes(8, "big") + queue


def wake_token(kind: bytes, name: bytes) -> str:
    """The NOTIFY payload for a key (``kind`` b"k") or a queue (b"q"): a hash that does not show the name."""
    return hashlib.sha256(b"cloister-wake\x00" + kind + b"\x00" + name).hexdigest()[:32]


def _lock_id(kind: bytes, name: bytes) -> int:
    return int.from_bytes(hashlib.sha256(b"cloister-lock\x00" + kind + b"\x00" + name).digest()[:8], "big", signed=True)


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password, for messages (a placeholder if it cannot be parsed)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable dsn>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - the mask, not a password
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


class PostgresStore:
    """A :class:`~cloister.storage.engine.Storage` over PostgreSQL through a psycopg connection pool."""

    def __init__(
        self,
        dsn: str,
        sealer: Sealer,
        *,
        password: str | None = None,
        service: str = "storage",
        max_connections: int = 10,
    ) -> None:
        """``dsn``: a libpq connection string or URL; ``password``, when given, overrides the DSN's."""
        try:
            self._conninfo = make_conninfo(dsn, password=password) if password is not None else make_conninfo(dsn)
        except psycopg.ProgrammingError:
            raise ConfigurationError("[storage] dsn is not a PostgreSQL connection string or URL") from None
        self._where = redact_dsn(self._conninfo)
        self._sealer = sealer
        self._service = service
        self._max_connections = max_connections
        self._pool: psycopg_pool.AsyncConnectionPool[Any] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._disk_full = False
        self._unreachable = False

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, apply pending migrations and start listening for other replicas' commits.

        Raises:
            UnavailableError: the database cannot be reached.
            ConfigurationError: the database's schema is newer than this Cloister.
        """
        pool: psycopg_pool.AsyncConnectionPool[Any] = psycopg_pool.AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._max_connections,
            kwargs={"autocommit": True},
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            open=False,
            name=f"cloister-{self._service}",
            timeout=10.0,
        )
        try:
            await pool.open(wait=True, timeout=15.0)
            async with pool.connection() as conn:
                await _migrate(conn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await pool.close()
            raise self._translate(exc) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._listener = asyncio.create_task(self._listen(), name="storage-listen")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise UnavailableError("the storage database is not open")
        async with self._pool.connection() as conn:
            yield conn

    # --- reads -------------------------------------------------------------------------

    async def get(self, key: bytes) -> Versioned | None:
        (value,) = await self.read([key])
        return value

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        """Several keys from one snapshot: a single statement."""
        if not keys:
            return []
        try:
            async with self._connection() as conn:
                cursor = await conn.execute(
                    "SELECT key, value, version FROM cloister_kv WHERE key = ANY(%s)", (list(keys),)
                )
                rows = await cursor.fetchall()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self._translate(exc) from None
        self._reachable()
        found = {bytes(key): (bytes(value), version) for key, value, version in rows}
        values: list[Versioned | None] = []
        for key in keys:
            row = found.get(bytes(key))
            if row is None:
                values.append(None)
            else:
                values.append(Versioned(self._sealer.unseal(row[0], kv_context(key, row[1])), row[1]))
        return values

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        low, high = prefix + b"-", prefix + b"."
        rows = await self._fetch("SELECT key FROM cloister_kv WHERE key >= %s AND key < %s ORDER BY key", (low, high))
        return [bytes(row[0]) for row in rows]

    async def queue_items(self, name: bytes, after_seq: int, limit: int) -> list[QueueItem]:
        rows = await self._fetch(
            "SELECT seq, value FROM cloister_queue_items WHERE queue = %s AND seq > %s ORDER BY seq LIMIT %s",
            (name, after_seq, limit),
        )
        return [QueueItem(seq, self._sealer.unseal(bytes(value), queue_context(name, seq))) for seq, value in rows]

    async def _fetch(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            async with self._connection() as conn:
                cursor = await conn.execute(query, params)  # type: ignore[arg-type]  # our constants
                rows = await cursor.fetchall()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self._translate(exc) from None
        self._reachable()
        return rows

    # --- writes ------------------------------------------------------------------------

    async def commit(self, ops: Sequence[Op]) -> list[OpResult]:
        """Apply ``ops`` atomically and durably; one result per op (a Dequeue's value)."""
        tokens: set[str] = set()
        for attempt in range(_RETRIES):
            try:
                async with self._connection() as conn:
                    # Pipelined: statements whose results are not needed yet (BEGIN, the locks, the
                    # writes, COMMIT) go out together, so a commit costs a few round trips, not one per op.
                    async with conn.pipeline(), conn.transaction():
                        results = await self._apply_all(conn, ops, tokens)
                    await self._notify(conn, tokens)
                break
            except pg_errors.TransactionRollback as exc:  # a serialization failure or a deadlock
                tokens.clear()
                if attempt == _RETRIES - 1:
                    raise self._translate(exc) from None
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                raise self._translate(exc) from None
        self._reachable()
        if self._disk_full:
            self._disk_full = False
            logger.warning("the storage database has room again; writes succeed")
        self._wake(tokens)
        return results

    async def _apply_all(
        self, conn: psycopg.AsyncConnection[Any], ops: Sequence[Op], tokens: set[str]
    ) -> list[OpResult]:
        locks = {_lock_id(b"k", op.key) for op in ops if isinstance(op, Put | Delete | Check | CheckValue)}
        locks |= {_lock_id(b"q", op.queue) for op in ops if isinstance(op, Enqueue)}
        if locks:
            # PostgreSQL evaluates the select list after ORDER BY, so the locks are taken in this order.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(id) FROM unnest(%s::bigint[]) AS id ORDER BY id", (sorted(locks),)
            )
        versions = await _draw(conn, "cloister_version", sum(isinstance(op, Put) for op in ops))
        seqs = await _draw(conn, "cloister_queue_seq", sum(isinstance(op, Enqueue) for op in ops))
        results: list[OpResult] = []
        for op in ops:
            result: OpResult = None
            if isinstance(op, Put):
                version = versions.pop(0)
                await conn.execute(
                    "INSERT INTO cloister_kv (key, value, version) VALUES (%s, %s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version",
                    (op.key, self._sealer.seal(op.value, kv_context(op.key, version)), version),
                )
                result = version
                tokens.add(wake_token(b"k", op.key))
            elif isinstance(op, Delete):
                await conn.execute("DELETE FROM cloister_kv WHERE key = %s", (op.key,))
                tokens.add(wake_token(b"k", op.key))
            elif isinstance(op, Enqueue):
                seq = seqs.pop(0)
                await conn.execute(
                    "INSERT INTO cloister_queue_items (seq, queue, value) VALUES (%s, %s, %s)",
                    (seq, op.queue, self._sealer.seal(op.value, queue_context(op.queue, seq))),
                )
                tokens.add(wake_token(b"q", op.queue))
            elif isinstance(op, Ack):
                await conn.execute("DELETE FROM cloister_queue_items WHERE queue = %s AND seq = %s", (op.queue, op.seq))
            elif isinstance(op, Dequeue):
                cursor = await conn.execute(_DEQUEUE, (op.queue,))
                row = await cursor.fetchone()
                if row is None:
                    raise NotFoundError("queue is empty")
                result = self._sealer.unseal(bytes(row[1]), queue_context(op.queue, row[0]))
            elif isinstance(op, Claim):
                lease_id = os.urandom(16)
                cursor = await conn.execute(_CLAIM, (lease_id, check_lease_seconds(op.lease_seconds), op.queue))
                row = await cursor.fetchone()
                if row is None:
                    raise NotFoundError("no element of the queue is free to claim")
                value = self._sealer.unseal(bytes(row[1]), queue_context(op.queue, row[0]))
                result = Lease(row[0], value, lease_id)
            elif isinstance(op, Extend):
                cursor = await conn.execute(
                    "UPDATE cloister_queue_items SET lease_until = clock_timestamp() + make_interval(secs => %s)"
                    " WHERE queue = %s AND seq = %s AND lease_id = %s RETURNING seq",
                    (check_lease_seconds(op.lease_seconds), op.queue, op.seq, op.lease_id),
                )
                if await cursor.fetchone() is None:
                    raise ConflictError(f"the lease on element {op.seq} of its queue was lost")
            elif isinstance(op, Check):
                cursor = await conn.execute("SELECT version FROM cloister_kv WHERE key = %s", (op.key,))
                row = await cursor.fetchone()
                if (0 if row is None else row[0]) != op.version:
                    raise ConflictError(f"{op.key.decode(errors='replace')} changed since it was read")
            elif isinstance(op, CheckValue):
                cursor = await conn.execute("SELECT value, version FROM cloister_kv WHERE key = %s", (op.key,))
                row = await cursor.fetchone()
                stored = None if row is None else self._sealer.unseal(bytes(row[0]), kv_context(op.key, row[1]))
                if stored is None or hashlib.sha256(stored).digest() != op.sha256:
                    raise ConflictError(f"{op.key.decode(errors='replace')} is not the value it was decided on")
            else:  # pragma: no cover - the Op union is closed
                raise TypeError(f"unknown storage op {op!r}")
            results.append(result)
        return results

    async def _notify(self, conn: psycopg.AsyncConnection[Any], tokens: set[str]) -> None:
        """Tell other replicas (after the commit: a lost hint costs at most one poll interval)."""
        if not tokens:
            return
        try:
            await conn.execute("SELECT pg_notify(%s, t) FROM unnest(%s::text[]) AS t", (CHANNEL, sorted(tokens)))
        except psycopg.Error as exc:
            logger.debug("storage notification not sent (%s); other replicas poll", type(exc).__name__)

    def _translate(self, exc: BaseException) -> CloisterError:
        """The error a caller sees for a database failure; the operator's log says more, without the password."""
        if isinstance(exc, pg_errors.DiskFull):
            if not self._disk_full:
                self._disk_full = True
                logger.error(
                    "the storage database (%s) is out of disk space: writes fail until it has room", self._where
                )
            return DiskFullError.of(self._service)
        if isinstance(exc, pg_errors.TransactionRollback):
            return ConflictError("the commit kept losing races with other commits; try again")
        if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
            if not self._unreachable:
                self._unreachable = True
                logger.warning("the storage database (%s) cannot be reached: %s", self._where, _first_line(exc))
            return UnavailableError("the storage database cannot be reached; try again shortly")
        sqlstate = getattr(exc, "sqlstate", None) or "none"
        logger.error("storage database error (SQLSTATE %s): %s", sqlstate, _first_line(exc))
        return InternalError(f"the storage database failed (SQLSTATE {sqlstate})")

    def _reachable(self) -> None:
        if self._unreachable:
            self._unreachable = False
            logger.warning("the storage database (%s) is reachable again", self._where)

    # --- watches -----------------------------------------------------------------------

    async def watch(self, key: bytes, after_version: int, timeout: float) -> Versioned | None:
        """The key's value once its version passes ``after_version`` (or at ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._subscribed(wake_token(b"k", key)) as event:
            while True:
                event.clear()
                current = await self.get(key)
                remaining = deadline - loop.time()
                if _changed(current, after_version) or remaining <= 0:
                    return current
                await _wait(event, min(remaining, POLL_SECONDS))

    async def watch_queue(self, name: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        """Elements after ``after_seq``, waiting up to ``timeout`` for the first one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._subscribed(wake_token(b"q", name)) as event:
            while True:
                event.clear()
                items = await self.queue_items(name, after_seq, limit)
                remaining = deadline - loop.time()
                if items or remaining <= 0:
                    return items
                await _wait(event, min(remaining, POLL_SECONDS))

    @contextlib.contextmanager
    def _subscribed(self, token: str) -> Any:
        event = asyncio.Event()
        waiting = self._waiters.setdefault(token, set())
        waiting.add(event)
        try:
            yield event
        finally:
            waiting.discard(event)
            if not waiting:
                self._waiters.pop(token, None)

    def _wake(self, tokens: set[str] | frozenset[str]) -> None:
        for token in tokens:
            for event in self._waiters.get(token, ()):
                event.set()

    async def _listen(self) -> None:
        """Wake local waiters on other replicas' commits; reconnect (waking everyone) when the connection drops."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._wake(frozenset(self._waiters))  # whatever happened while nobody listened
                    async for notification in conn.notifies():
                        self._wake({notification.payload})
            except Exception as exc:  # any failure: the waiters poll meanwhile, and the listener tries again
                logger.debug("storage listener lost its connection (%s); waiters poll meanwhile", type(exc).__name__)
            await asyncio.sleep(POLL_SECONDS)


async def _migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _SCHEMA_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS cloister_schema (version integer NOT NULL)")
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM cloister_schema")
        row = await cursor.fetchone()
        current = row[0] if row is not None else 0
        if current > len(_MIGRATIONS):
            raise ConfigurationError(
                f"the storage database's schema is version {current}, newer than this Cloister knows "
                f"({len(_MIGRATIONS)}); run a newer Cloister"
            )
        for number, script in enumerate(_MIGRATIONS[current:], start=current + 1):
            await conn.execute(script.encode())
            await conn.execute("INSERT INTO cloister_schema (version) VALUES (%s)", (number,))
            logger.info("storage database schema migrated to version %d", number)


async def _draw(conn: psycopg.AsyncConnection[Any], sequence: str, count: int) -> list[int]:
    """``count`` new numbers from ``sequence``, ascending."""
    if count == 0:
        return []
    cursor = await conn.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (sequence, count))
    return sorted(row[0] for row in await cursor.fetchall())


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):  # not wait_for, which can lose a cancellation on 3.11
            await event.wait()


def _changed(current: Versioned | None, after_version: int) -> bool:
    if current is None:
        return after_version > 0
    return current.version > after_version


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
