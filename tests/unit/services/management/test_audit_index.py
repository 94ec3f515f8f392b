"""The audit index answers exactly what scanning every entry answers, newest first and page by page,
and it is built once for entries older than it, kept in step by saves, and pruned by retention."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
from pathlib import Path
from typing import Any

import pytest
from policy_authorizer import caller

from cloister.errors import AccessDeniedError, FailedOperationError, InternalError, InvalidArgumentError
from cloister.model.audit import AuditEntry, ChainHead
from cloister.model.roles import Role
from cloister.services.management import audit_index, audit_search
from cloister.services.management.audit import HEAD_KEY, AuditLog, entry_key
from cloister.services.management.audit_index import (
    KEY_KEY,
    STATE_KEY,
    block_prefix,
    decode_bits,
    encode_bits,
    offsets_of,
)
from cloister.services.management.audit_query import parse_query
from cloister.services.management.audit_retention import AuditRetention
from cloister.storage.records import put

ADMIN = caller("auditor", Role.parse("PlatformAdmin"))
SECOND = 1_000_000
COMPAT = ipaddress.IPv6Address("::127.0.0.1").packed
V6 = ipaddress.IPv6Address("2001:db8::1").packed
MESSAGES = [
    "register_function",
    "authenticate to register_function: authentication failed",
    "get_task",
    'get_task: status: NOT_FOUND, message: "invalid task id"',
    "authorize task.approve task-3f2a9c1e-0000-4000-8000-00000000beef",
    "a b c",
    "b a",
    "c",
    "a " + "y" * 45 + " b",
]
USERS = ["", "{ user: frontend_user, role: PlatformAdmin }", '{ user: other_user, role: DataOwner("org1") }']
QUERIES = [
    "",
    "*",
    "register_function",
    "message:register_function",
    "user:frontend_user",
    "message:authenticate",
    "+result:false +get_task",
    "result:false AND get_task",
    'message:"to register"',
    "ip:2001:db8::1",
    "ip:127.0.0.1",
    "REGISTER",
    "regist",
    "a b",
    "a AND NOT b",
    "NOT (a OR b) AND c",
    "-a b c",
    "+(a b) -c",
    '"a b"',
    '* -"a b"',
    '-"b a" c',
    "b -NOT a",
    "a OR -b",
    f'"a {"y" * 45} b"',
    "+. +a",
    "message:!!!",
    "3f2a9c1e",
    'message:"task 3f2a9c1e"',
    "date:1970-01-01T00:00:07Z",
    "date:[1970-01-01T00:00:05Z TO 1970-01-01T00:00:20Z]",
    "date:{1970-01-01T00:00:05Z TO *} AND user:other_user",
    "+date:[* TO 1970-01-01T00:00:10Z] -result:true",
    "(a OR register) AND -result:true",
    "user:frontend_user^2 OR c",
]


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 16 entries, so a few hundred entries span many blocks."""
    monkeypatch.setattr(audit_index, "BLOCK_ENTRIES", 16)


def _random_entries(count: int, seed: int = 7) -> list[AuditEntry]:
    rng, at = random.Random(seed), 0
    entries = []
    for _ in range(count):
        at += rng.randint(0, 700_000)
        stamp = max(0, at - rng.randint(0, 2_500_000))  # stored a little out of time order, as spools ship
        entries.append(
            AuditEntry(stamp, rng.choice([COMPAT, V6]), rng.choice(USERS), rng.choice(MESSAGES), rng.random() < 0.7)
        )
    return entries


def _scan_newest(query: str, entries: list[AuditEntry], limit: int) -> list[AuditEntry]:
    """What scanning every entry answers: Teaclave's order, newer seconds first, then as stored."""
    parsed = parse_query(query)
    found = [(n, e) for n, e in enumerate(entries, 1) if parsed.matches(e)]
    found.sort(key=lambda pair: (-(pair[1].microsecond // SECOND), pair[0]))
    return [e for _, e in found[:limit]]


def _scan_numbers(query: str, entries: list[AuditEntry]) -> list[int]:
    parsed = parse_query(query)
    return [n for n, e in enumerate(entries, 1) if parsed.matches(e)]


async def _all_pages(log: AuditLog, query: str, limit: int, after: int = 0) -> list[int]:
    numbers: list[int] = []
    while True:
        page = await log.query_page(ADMIN, query, limit, after)
        assert all(r.seq > after for r in page.records) and page.next_after >= after
        numbers += [r.seq for r in page.records]
        if page.caught_up:
            return numbers
        assert page.next_after > after, "a page that is not the last must move the cursor"
        after = page.next_after


def test_postings_round_trip_and_their_sizes_only_show_a_rough_count() -> None:
    for offsets in ([], [0], [5, 4095], list(range(0, 4096, 37)), list(range(129)), list(range(4096))):
        bits = sum(1 << o for o in offsets)
        assert decode_bits(encode_bits(bits)) == bits
        assert offsets_of(bits) == offsets
    sizes = {count: len(encode_bits((1 << count) - 1)) for count in range(1, 300)}
    assert sizes[5] == sizes[8] and sizes[9] == sizes[16] and sizes[65] == sizes[128]
    assert sizes[129] == sizes[299] == 1 + 4096 // 8
    assert len(set(sizes.values())) == 7
    for garbage in (b"", b"\x03abc", b"\x01" + bytes(10), b"\x02\xff\xff"):
        with pytest.raises(InternalError):
            decode_bits(garbage)


def test_index_answers_as_a_scan_would(services: Any, small_blocks: None) -> None:
    entries = _random_entries(400)

    async def go() -> None:
        for start in range(0, len(entries), 37):
            await services.audit.save(entries[start : start + 37])
        for query in QUERIES:
            for limit in (1, 4, 30, 1000):
                found = await services.audit.query(ADMIN, query, limit)
                assert found == _scan_newest(query, entries, limit), (query, limit)
            expected = _scan_numbers(query, entries)
            for limit in (1, 9, 100):
                assert await _all_pages(services.audit, query, limit) == expected, (query, limit)
            assert await _all_pages(services.audit, query, 50, after=123) == [n for n in expected if n > 123]

    asyncio.run(go())


def test_within_a_second_entries_keep_the_order_stored_across_blocks(services: Any, small_blocks: None) -> None:
    # Entries 1 to 40 share one second, stored in three blocks, newest block first when read;
    # an entry of the latest second then comes after them all.
    entries = [AuditEntry(5 * SECOND + n, COMPAT, "", f"call {n}", True) for n in range(1, 41)]
    entries.append(AuditEntry(9 * SECOND, COMPAT, "", "call 41", True))

    async def go() -> None:
        await services.audit.save(entries)
        found = await services.audit.query(ADMIN, "call", 4)
        assert [e.message for e in found] == ["call 41", "call 1", "call 2", "call 3"]

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_entries_and_their_index_records_are_one_commit(services: Any, storage: Any) -> None:
    async def go() -> None:
        await services.audit.save([AuditEntry(SECOND, COMPAT, "", "first call", True)])
        await services.audit.save([AuditEntry(2 * SECOND, COMPAT, "", "second call", True)])
        assert len(storage.commits) == 2
        first, second = ({op.key for op in commit} for commit in storage.commits)
        assert {KEY_KEY, STATE_KEY, entry_key(1), HEAD_KEY} <= first  # the index is born with the log
        assert len(storage.data[KEY_KEY].value) == 32
        assert entry_key(2) in second and any(k.startswith(block_prefix(0) + b"-") for k in second)
        assert KEY_KEY not in second
        # No key of the index names a term: they are keyed hashes.
        index_keys = [k for k in storage.data if k.startswith(b"audit_index")]
        assert not any(word in key for key in index_keys for word in (b"call", b"first", b"true"))

        restarted = AuditLog(storage, services.authorizer)  # a new process finds the same key
        assert [e.message for e in await restarted.query(ADMIN, "message:call", 10)] == ["second call", "first call"]

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_an_index_whose_key_is_gone_is_refused_not_rebuilt_silently(services: Any, storage: Any) -> None:
    async def go() -> None:
        await services.audit.save([AuditEntry(SECOND, COMPAT, "", "call", True)])
        del storage.data[KEY_KEY]
        with pytest.raises(InternalError, match="key is missing"):
            await AuditLog(storage, services.authorizer).query(ADMIN, "call", 10)

    asyncio.run(go())


async def _store_unindexed(storage: Any, entries: list[AuditEntry], head: ChainHead) -> ChainHead:
    """What a version without the index stored: chained entries and the head, nothing else."""
    chained, head = head.extend(entries)
    await storage.commit([*(put(entry_key(c.seq), c) for c in chained), put(HEAD_KEY, head)])
    return head


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_entries_from_before_the_index_are_indexed_once_while_saves_go_on(
    services: Any, storage: Any, small_blocks: None
) -> None:
    old, new = _random_entries(150, seed=1), _random_entries(60, seed=2)

    async def go() -> None:
        await _store_unindexed(storage, old, ChainHead())
        log = AuditLog(storage, services.authorizer)
        building = asyncio.create_task(log.build_index())
        for start in range(0, len(new), 6):  # saves interleave with the backfill's commits
            await log.save(new[start : start + 6])
        await building
        assert log.index_built
        assert json.loads(storage.data[STATE_KEY].value) == {"version": 1, "backfill_until": 150, "backfilled": 150}
        entries = old + new
        for query in ("", "message:register_function", '* -"a b"', "user:other_user AND result:false"):
            assert await log.query(ADMIN, query, 25) == _scan_newest(query, entries, 25)
            assert await _all_pages(log, query, 17) == _scan_numbers(query, entries)
        # Built once: a restarted management finds it complete and writes nothing more.
        commits = len(storage.commits)
        again = AuditLog(storage, services.authorizer)
        await again.build_index()
        assert again.index_built and len(storage.commits) == commits

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_a_backfill_cut_short_resumes_where_it_stopped(services: Any, storage: Any, small_blocks: None) -> None:
    old = _random_entries(100, seed=3)

    async def go() -> None:
        await _store_unindexed(storage, old, ChainHead())
        log = AuditLog(storage, services.authorizer)
        original = storage.commit
        calls = 0

        async def failing_later(ops: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise RuntimeError("storage went away")
            await original(ops)

        storage.commit = failing_later
        with pytest.raises(RuntimeError):
            await log.build_index()
        assert not log.index_built
        assert 0 < json.loads(storage.data[STATE_KEY].value)["backfilled"] < 100
        storage.commit = original
        assert await log.query(ADMIN, "get_task", 1000) == _scan_newest("get_task", old, 1000)
        assert log.index_built

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_retention_deletes_the_index_records_of_blocks_it_cut(
    services: Any, storage: Any, small_blocks: None, tmp_path: Path
) -> None:
    now = 1_800_000_000.0
    old = [AuditEntry(int((now - 90 * 86_400) * SECOND) + n, COMPAT, "", f"old call {n}", True) for n in range(40)]
    recent = [AuditEntry(int(now * SECOND) + n * SECOND, COMPAT, "", f"new call {n}", True) for n in range(5)]

    async def go() -> None:
        await services.audit.save(old)
        await services.audit.save(recent)
        retention = AuditRetention(storage, tmp_path / "exports", 30 * 86_400, 3600, now=lambda: now)
        assert await retention.apply() == 40
        # Blocks 0 and 1 hold entries 1 to 31 only, all cut; block 2 (32 to 47) still holds 41 to 45.
        assert not any(k.startswith((block_prefix(0), block_prefix(1))) for k in storage.data)
        assert any(k.startswith(block_prefix(2)) for k in storage.data)
        assert [e.message for e in await services.audit.query(ADMIN, "call", 100)] == [
            e.message for e in reversed(recent)
        ]
        page = await services.audit.query_page(ADMIN, "call", 100, 0)
        assert [r.seq for r in page.records] == [41, 42, 43, 44, 45] and page.cut_through == 40
        assert await retention.apply() == 0  # nothing more to cut, nor to prune

    asyncio.run(go())


def test_answers_stay_under_the_message_limit(services: Any) -> None:
    big = "x" * (200 * 1024)
    entries = [AuditEntry(n * SECOND, COMPAT, "", f"big {n} {big}", True) for n in range(1, 41)]  # 8 MiB in all

    async def go() -> None:
        for start in range(0, 40, 10):
            await services.audit.save(entries[start : start + 10])
        newest = await services.audit.query(ADMIN, "big", 1000)
        assert 0 < len(newest) < 40 and sum(audit_search.entry_bytes(e) for e in newest) <= audit_search.PAGE_BYTES
        assert newest == entries[::-1][: len(newest)]
        assert await _all_pages(services.audit, "big", 1000) == list(range(1, 41))

    asyncio.run(go())


def test_a_page_reads_a_bounded_number_of_entries(
    services: Any, small_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_search, "MAX_EXAMINED", 10)
    entries = [AuditEntry(n * SECOND, COMPAT, "", "a b", True) for n in range(1, 61)]
    entries[45] = AuditEntry(46 * SECOND, COMPAT, "", "b a", True)

    async def go() -> None:
        await services.audit.save(entries)
        # Every entry holds both words, so the index cannot rule any out of the phrase "b a".
        first = await services.audit.query_page(ADMIN, '"b a"', 100, 0)
        assert first.records == () and 0 < first.next_after < first.head == 60
        assert await _all_pages(services.audit, '"b a"', 100) == [46]

    asyncio.run(go())


def test_page_requests_are_checked(services: Any) -> None:
    async def go() -> None:
        await services.audit.save([AuditEntry(n * SECOND, COMPAT, "", "call", True) for n in range(1, 151)])
        with pytest.raises(AccessDeniedError):
            await services.audit.query_page(caller("bob", Role.parse("DataOwner-x")), "", 10, 0)
        with pytest.raises(InvalidArgumentError, match="at most 10000"):
            await services.audit.query_page(ADMIN, "", 10_001, 0)
        with pytest.raises(InvalidArgumentError, match="query is not valid: unbalanced"):
            await services.audit.query_page(ADMIN, '"call', 10, 0)
        default = await services.audit.query_page(ADMIN, "", 0, 0)
        assert len(default.records) == 100 and default.next_after == 100 and not default.caught_up
        past = await services.audit.query_page(ADMIN, "", 10, 500)  # a cursor beyond the log
        assert past.records == () and past.caught_up
        # Teaclave's call takes any limit, up to what fits in an answer.
        assert len(await services.audit.query(ADMIN, "", 2**63)) == 150
        with pytest.raises(FailedOperationError, match="failed to query logs"):
            await services.audit.query(ADMIN, '"call', 10)

    asyncio.run(go())
