"""The audit hash chain detects entries changed, removed, reordered or appended out of band."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cloister.model.audit import AuditChainBrokenError, AuditEntry, ChainHead, verify_chain


def _log(n: int) -> tuple[list[tuple[int, bytes]], ChainHead]:
    entries = [AuditEntry(i, bytes(16), f"user{i}", f"api_{i}", True) for i in range(n)]
    chained, head = ChainHead().extend(entries[:3])
    more, head = head.extend(entries[3:])  # two batches chain as one
    return [(c.seq, json.dumps(c.to_json()).encode()) for c in chained + more], head


def test_intact_log_verifies() -> None:
    records, head = _log(6)
    assert verify_chain(records, head) == 6
    assert verify_chain([], ChainHead()) == 0


def test_changed_entry() -> None:
    records, head = _log(6)
    data = json.loads(records[2][1])
    data["entry"]["message"] = "quietly_edited"
    records[2] = (3, json.dumps(data).encode())
    with pytest.raises(AuditChainBrokenError, match="entry 3 was changed"):
        verify_chain(records, head)


def test_removed_entry() -> None:
    records, head = _log(6)
    del records[3]
    with pytest.raises(AuditChainBrokenError, match="entry 4 is missing"):
        verify_chain(records, head)
    with pytest.raises(AuditChainBrokenError, match="removed or added at the end"):
        verify_chain(_log(6)[0][:5], head)


def test_reordered_entries() -> None:
    records, head = _log(6)
    swapped = list(records)
    swapped[1], swapped[2] = (2, records[2][1]), (3, records[1][1])
    with pytest.raises(AuditChainBrokenError, match=r"out of order|does not follow"):
        verify_chain(swapped, head)


def test_rechained_entry_still_breaks_its_successor() -> None:
    records, head = _log(4)
    data = json.loads(records[1][1])
    edited = replace(AuditEntry.from_json(data["entry"]), message="edited")
    (rechained,), _ = ChainHead(1, bytes.fromhex(data["prev"])).extend([edited])
    records[1] = (2, json.dumps(rechained.to_json()).encode())
    with pytest.raises(AuditChainBrokenError, match="entry 3 does not follow entry 2"):
        verify_chain(records, head)
