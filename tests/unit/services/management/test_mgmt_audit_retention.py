"""Retention exports old audit entries, then deletes them in batches, and the log verifies across the cut."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from policy_authorizer import caller

from cloister.model.audit import AuditChainBrokenError, AuditEntry, verify_chain, verify_exports
from cloister.model.roles import Role
from cloister.services.management import audit_retention
from cloister.services.management.audit import ANCHOR_KEY, HEAD_KEY, entry_seq, load_anchor, load_head
from cloister.services.management.audit_retention import AuditRetention, export_files
from cloister.storage.ops import Delete, Put

DAY = 86_400
NOW = 1_800_000_000.0


def _entries(first: int, count: int, at: float) -> list[AuditEntry]:
    return [AuditEntry(int(at * 1_000_000) + n, bytes(16), "", f"call {first + n}", True) for n in range(count)]


def _verify(storage: Any, exports: Path) -> tuple[int, int]:
    anchor = load_anchor(storage.data[ANCHOR_KEY].value if ANCHOR_KEY in storage.data else None)
    exported, past = verify_exports([(p.name, p.read_bytes()) for p in export_files(exports)], anchor)
    keys = sorted(k for k in storage.data if k.startswith(b"audit-"))
    records = [(entry_seq(k), storage.data[k].value) for k in keys]
    return exported, verify_chain(records, load_head(storage.data[HEAD_KEY].value), anchor, past)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_retention, "EXPORT_ENTRIES", 8)
    monkeypatch.setattr(audit_retention, "DELETE_BATCH", 3)
    monkeypatch.setattr(audit_retention, "_READ_CHUNK", 5)


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_old_entries_are_exported_then_deleted_and_the_rest_still_verifies_and_answers(
    services: Any, storage: Any, tmp_path: Path, small_batches: None
) -> None:
    retention = AuditRetention(storage, tmp_path / "exports", 30 * DAY, 3600, now=lambda: NOW)

    async def go() -> None:
        await services.audit.save(_entries(1, 20, NOW - 40 * DAY))
        await services.audit.save(_entries(21, 5, NOW - DAY))
        storage.commits.clear()
        assert await retention.apply() == 20
        assert await retention.apply() == 0  # nothing more is old enough
        await services.audit.save(_entries(26, 2, NOW))
        found = await services.audit.query(caller("auditor", Role.parse("PlatformAdmin")), "message:call", 100)
        assert sorted(int(e.message.split()[1]) for e in found) == list(range(21, 28))

    asyncio.run(go())
    deletes = [sum(isinstance(op, Delete) for op in commit) for commit in storage.commits]
    assert max(deletes) <= 3 and sum(deletes) == 20  # batches, each with its anchor
    assert [p.name for p in export_files(tmp_path / "exports")] == [
        "audit-00000000000000000001-00000000000000000008.jsonl",
        "audit-00000000000000000009-00000000000000000016.jsonl",
        "audit-00000000000000000017-00000000000000000020.jsonl",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in export_files(tmp_path / "exports"))
    assert _verify(storage, tmp_path / "exports") == (20, 7)
    assert json.loads(storage.data[ANCHOR_KEY].value)["seq"] == 20


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_a_cut_interrupted_by_a_crash_is_finished_at_the_next_pass(
    services: Any, storage: Any, tmp_path: Path, small_batches: None
) -> None:
    retention = AuditRetention(storage, tmp_path, DAY, 3600, now=lambda: NOW)
    real_commit = storage.commit
    commits = 0

    async def crash_after_one_batch(ops: Any) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:
            raise ConnectionError("management was killed")
        await real_commit(ops)

    async def go() -> None:
        await services.audit.save(_entries(1, 6, NOW - 2 * DAY))
        await services.audit.save(_entries(7, 1, NOW))
        storage.commit = crash_after_one_batch
        with pytest.raises(ConnectionError):
            await retention.apply()
        storage.commit = real_commit
        assert _verify(storage, tmp_path) == (3, 4)  # entries 4-6 are both exported and stored: they must match
        assert await retention.apply() == 3

    asyncio.run(go())
    assert _verify(storage, tmp_path) == (6, 1)


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_a_log_that_does_not_verify_is_not_cut(services: Any, storage: Any, tmp_path: Path) -> None:
    retention = AuditRetention(storage, tmp_path, DAY, 3600, now=lambda: NOW)

    async def go() -> None:
        await services.audit.save(_entries(1, 4, NOW - 2 * DAY))
        key = b"audit-%020d" % 2
        record = storage.json(key)
        record["entry"]["message"] = "rewritten"
        await storage.commit([Put(key, json.dumps(record).encode())])
        with pytest.raises(AuditChainBrokenError, match="audit entry 2 does not verify"):
            await retention.apply()

    asyncio.run(go())
    assert sum(k.startswith(b"audit-") for k in storage.data) == 4 and ANCHOR_KEY not in storage.data
    assert export_files(tmp_path) == []
