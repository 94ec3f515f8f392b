"""Audit queries over a million entries with the index, against scanning every entry of ten thousand.

Builds the log directly through management's audit log over a sealed SQLite store in this
process (the storage service's database, without a million RPCs): realistic entries, a third of
them access decisions naming task ids, 200 users. The baseline is how queries ran before the
index, reading and matching every stored entry, over a log of 10,000 entries; the indexed
queries run over the full log, newest first (Teaclave's QueryAuditLogs) and as one cursor page.
Also prints the build and upgrade (backfill) rates and what the index costs on disk.

Usage: python -m benchmarks.audit_query [--entries 1000000] [--baseline-entries 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from cloister.crypto.sealing import Sealer
from cloister.model.access import Subject
from cloister.model.audit import AuditEntry, ChainedEntry
from cloister.model.roles import Role
from cloister.services.management.audit import ENTRY_PREFIX, AuditLog
from cloister.services.management.audit_query import parse_query
from cloister.storage.local import LocalStorage
from cloister.storage.ops import Delete
from cloister.storage.sqlite import SQLiteStore

ADMIN = Subject("auditor", Role.parse("PlatformAdmin"))
APIS = ["register_function", "get_task", "create_task", "invoke_task", "get_function", "list_functions"]
QUERIES = [
    "",
    "message:register_function",
    "user:user7",
    "user:user7 AND message:authenticate",
    "ip:10.0.2.77 AND result:false",
    '"authentication failed" -user:user3',
    "date:[2023-11-15T00:00:00Z TO 2023-11-15T01:00:00Z]",
    "nosuchterm",
]
_BATCH = 5_000


class _AllowAll:
    """Every decision allowed: the benchmark measures the log, not the access control service."""

    async def decide(self, subject: object, queries: list[object]) -> list[bool]:
        return [True] * len(queries)


def _entries(count: int, start: int, rng: random.Random) -> list[AuditEntry]:
    entries, at = [], 1_700_000_000_000_000 + start * 10_000
    for _ in range(count):
        at += rng.randint(0, 20_000)
        api, draw = rng.choice(APIS), rng.random()
        if draw < 0.3:
            message = f"authorize task.approve task-{uuid.UUID(int=rng.getrandbits(128))}"
        elif draw < 0.35:
            message = f"authenticate to {api}: authentication failed"
        else:
            message = api
        user = f"{{ user: user{rng.randrange(200)}, role: DataOwner }}"
        ip = bytes(12) + bytes([10, 0, rng.randrange(4), rng.randrange(1, 200)])
        entries.append(AuditEntry(at, ip, user, message, draw >= 0.3))
    return entries


async def _build(log: AuditLog, count: int, seed: int) -> float:
    """Store ``count`` entries; the seconds it took."""
    rng = random.Random(seed)
    started = time.perf_counter()
    for start in range(0, count, _BATCH):
        await log.save(_entries(min(_BATCH, count - start), start, rng))
    return time.perf_counter() - started


async def _median_ms(run: Callable[[], Awaitable[object]], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


async def _scan(storage: LocalStorage, query: str, limit: int) -> list[AuditEntry]:
    """A query as it ran before the index: read every entry, match each, sort, cut."""
    parsed = parse_query(query)
    found = []
    for value in await storage.read(await storage.keys_with_prefix(ENTRY_PREFIX)):
        if value is not None:
            record = ChainedEntry.from_json(json.loads(value.value))
            if parsed.matches(record.entry):
                found.append((record.seq, record.entry))
    found.sort(key=lambda pair: (-(pair[1].microsecond // 1_000_000), pair[0]))
    return [entry for _, entry in found[:limit]]


def _open(directory: Path) -> tuple[SQLiteStore, LocalStorage]:
    store = SQLiteStore(directory / "cloister.db", Sealer(os.urandom(32)))
    store.start()
    return store, LocalStorage(store)


def _bytes_by_kind(database: Path) -> tuple[int, int]:
    """Sealed bytes (keys and values) of the entries and of the index."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        entries, index = (
            db.execute(
                "SELECT coalesce(sum(length(key) + length(value)), 0) FROM kv WHERE key >= ? AND key < ?", r
            ).fetchone()[0]
            for r in ((b"audit-", b"audit."), (b"audit_index", b"audit_indey"))
        )
    finally:
        db.close()
    return entries, index


async def _run(entries: int, baseline_entries: int, directory: Path) -> None:
    small_store, small = _open(directory / "small")
    try:
        await _build(AuditLog(small, _AllowAll()), baseline_entries, seed=2)  # type: ignore[arg-type]
        baseline = await _median_ms(lambda: _scan(small, "message:register_function", 100), 5)
    finally:
        small_store.close()
    print(f"baseline: scanning every entry, {baseline_entries} entries: {baseline:8.1f} ms per query")

    store, storage = _open(directory / "big")
    log = AuditLog(storage, _AllowAll())  # type: ignore[arg-type]
    seconds = await _build(log, entries, seed=1)
    print(f"built {entries} entries through the audit log in {seconds:.0f} s ({entries / seconds:,.0f} entries/s)")
    print(f"{'query':<55} {'newest first, limit 100':>26} {'one page of 100':>24}")
    for query in QUERIES:
        newest = await _median_ms(lambda q=query: log.query(ADMIN, q, 100), 5)
        page = await _median_ms(lambda q=query: log.query_page(ADMIN, q, 100, 0), 5)
        print(
            f"{query or '(every entry)':<55} {newest:8.1f} ms {newest / baseline:6.3f}x scan"
            f"   {page:8.1f} ms {page / baseline:6.3f}x scan"
        )
    store.close()
    entry_bytes, index_bytes = _bytes_by_kind(directory / "big" / "cloister.db")
    print(f"on disk per entry: {entry_bytes / entries:.0f} bytes sealed, index {index_bytes / entries:.0f} bytes more")


async def _backfill_rate(directory: Path, count: int) -> float:
    """Entries per second that an upgrade indexes (the log stored without an index first)."""
    store, storage = _open(directory)
    try:
        log = AuditLog(storage, _AllowAll())  # type: ignore[arg-type]
        await _build(log, count, seed=3)
        keys = await storage.keys_with_prefix(b"audit_index")
        for start in range(0, len(keys), 1000):
            await storage.commit([Delete(k) for k in keys[start : start + 1000]])
        await storage.commit([Delete(b"audit_index")])
        fresh = AuditLog(storage, _AllowAll())  # type: ignore[arg-type]
        started = time.perf_counter()
        await fresh.build_index()
        return count / (time.perf_counter() - started)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--baseline-entries", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("small", "big", "upgrade"):
            (root / name).mkdir()
        asyncio.run(_run(args.entries, args.baseline_entries, root))
        rate = asyncio.run(_backfill_rate(root / "upgrade", args.baseline_entries * 5))
        print(f"upgrade: entries stored without an index are indexed at {rate:,.0f} entries/s")


if __name__ == "__main__":
    main()
