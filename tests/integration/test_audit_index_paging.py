"""Cursor pages over 100,000 audit entries in a real sealed SQLite store hold every entry exactly
once while new entries keep arriving, and the store's bytes never show a user id, message or term."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from policy_authorizer import PolicyAuthorizer, caller

from cloister.crypto.sealing import Sealer
from cloister.model.audit import AuditEntry, AuditRecord
from cloister.model.roles import Role
from cloister.services.management.audit import AuditLog
from cloister.storage.local import LocalStorage
from cloister.storage.sqlite import SQLiteStore

ADMIN = caller("auditor", Role.parse("PlatformAdmin"))
ENTRIES = 100_000
APIS = ["register_function", "get_task", "create_task", "invoke_task", "list_functions", "approve_task"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "cloister.db", Sealer(os.urandom(32)))
    store.start()
    yield store
    store.close()


def _entries(count: int, start: int, rng: random.Random) -> list[AuditEntry]:
    entries = []
    for n in range(start, start + count):
        user = f"{{ user: user{rng.randrange(50)}, role: PlatformAdmin }}"
        ip = bytes(12) + bytes([10, 0, 0, rng.randrange(1, 20)])
        entries.append(AuditEntry(1_700_000_000_000_000 + n * 1000, ip, user, f"{rng.choice(APIS)} {n}", True))
    return entries


def test_cursor_pages_hold_every_entry_once_while_entries_arrive(store: SQLiteStore) -> None:
    log = AuditLog(LocalStorage(store), PolicyAuthorizer())
    rng = random.Random(14)

    async def go() -> None:
        for start in range(0, ENTRIES, 5000):
            await log.save(_entries(5000, start, rng))
        stop = asyncio.Event()

        async def append() -> int:
            added = 0
            while not stop.is_set():
                await log.save(_entries(rng.randint(1, 300), ENTRIES + added, rng))
                added = (await log.query_page(ADMIN, "", 1, 0)).head - ENTRIES
            return added

        appender = asyncio.create_task(append())
        everything: list[int] = []
        get_task: list[int] = []
        after = after_get_task = 0
        for _ in range(20):  # two cursors at once, pages of every entry and of one API's, as entries arrive
            page = await log.query_page(ADMIN, "", 7_000, after)
            everything += [r.seq for r in page.records]
            after = page.next_after
            partial = await log.query_page(ADMIN, "message:get_task", 2_000, after_get_task)
            get_task += [r.seq for r in partial.records]
            after_get_task = partial.next_after
        stop.set()
        assert await appender > 0, "entries were added while the pages were read"
        everything += [r.seq async for r in _rest(log, "", after)]
        get_task += [r.seq async for r in _rest(log, "message:get_task", after_get_task)]
        head = (await log.query_page(ADMIN, "", 1, 0)).head
        assert head > ENTRIES and everything == list(range(1, head + 1)), "every entry once, in order"
        expected = [r.seq async for r in _rest(log, "message:get_task", 0)]
        assert get_task == expected and len(expected) > ENTRIES // 10

    asyncio.run(go())


async def _rest(log: AuditLog, query: str, after: int) -> AsyncIterator[AuditRecord]:
    """The matching entries after ``after``, following the cursor until it is caught up."""
    while True:
        page = await log.query_page(ADMIN, query, 10_000, after)
        for record in page.records:
            yield record
        if page.caught_up:
            return
        after = page.next_after


def test_the_database_shows_no_user_id_message_or_term(store: SQLiteStore, tmp_path: Path) -> None:
    log = AuditLog(LocalStorage(store), PolicyAuthorizer())
    secrets = ["zanzibarowner", "quetzalcoatlmessage", "xylophoneterm"]
    entries = [
        AuditEntry(
            1_700_000_000_000_000 + n,
            bytes(16),
            f"{{ user: {secrets[0]}{n % 3}, role: PlatformAdmin }}",
            f"{secrets[1]} {secrets[2]} call {n}",
            n % 2 == 0,
        )
        for n in range(500)
    ]

    async def go() -> None:
        for start in range(0, len(entries), 100):
            await log.save(entries[start : start + 100])
        found = await log.query(ADMIN, f"user:{secrets[0]}1 AND {secrets[2]}", 1000)
        assert len(found) == len([n for n in range(500) if n % 3 == 1])

    asyncio.run(go())
    store.close()  # checkpoints the write-ahead log into the file (the fixture's close is then a no-op)
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("cloister.db"))
    assert b"audit_index-" in raw, "the index is in this file"
    for secret in secrets:
        for form in (secret.encode(), secret.encode("utf-16-le"), secret.encode().hex().encode()):
            assert form not in raw, f"{secret} is readable in the database"
    assert b"PlatformAdmin" not in raw
