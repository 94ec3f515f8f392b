"""A log cut by retention still verifies: from its anchor, and its exports chain into the anchor."""

from __future__ import annotations

import hashlib
import json

import pytest

from cloister.model.audit import (
    AuditChainBrokenError,
    AuditEntry,
    ChainAnchor,
    ChainedEntry,
    ChainHead,
    verify_chain,
    verify_exports,
)


def _raw(record: ChainedEntry) -> bytes:
    return json.dumps(record.to_json(), separators=(",", ":")).encode()


def _log(count: int) -> tuple[list[ChainedEntry], ChainHead]:
    entries = [AuditEntry(n, bytes(16), "{ user: u }", f"call {n}", True) for n in range(1, count + 1)]
    return ChainHead().extend(entries)


def _export(records: list[ChainedEntry]) -> tuple[str, bytes]:
    name = f"audit-{records[0].seq:020d}-{records[-1].seq:020d}.jsonl"
    return name, b"".join(_raw(r) + b"\n" for r in records)


def _cut(records: list[ChainedEntry], sizes: list[int]) -> tuple[list[tuple[str, bytes]], ChainAnchor]:
    """Export the first ``sum(sizes)`` entries in files of those sizes; the anchor the cut leaves."""
    files, start = [], 0
    for size in sizes:
        files.append(_export(records[start : start + size]))
        start += size
    last = records[start - 1]
    name, content = files[-1]
    return files, ChainAnchor(last.seq, last.digest, name, hashlib.sha256(content).hexdigest())


def _stored(records: list[ChainedEntry], after: int) -> list[tuple[int, bytes]]:
    return [(r.seq, _raw(r)) for r in records if r.seq > after]


def test_a_cut_log_verifies_from_its_anchor_and_its_exports_into_it() -> None:
    records, head = _log(10)
    files, anchor = _cut(records, [3, 4])
    assert verify_exports(files, anchor) == (7, {})
    assert verify_chain(_stored(records, 7), head, anchor) == 3


def test_everything_cut_leaves_an_empty_log_that_still_verifies() -> None:
    records, head = _log(4)
    files, anchor = _cut(records, [4])
    assert verify_exports(files, anchor) == (4, {})
    assert verify_chain([], head, anchor) == 0
    with pytest.raises(AuditChainBrokenError, match="removed or added at the end"):
        verify_chain([], head, ChainAnchor(3, records[2].digest))


def test_the_remainder_must_start_right_after_the_anchor() -> None:
    records, head = _log(6)
    _, anchor = _cut(records, [3])
    with pytest.raises(AuditChainBrokenError, match="entry 4 is missing"):
        verify_chain(_stored(records, 4), head, anchor)
    forged = ChainAnchor(3, bytes(32), anchor.export, anchor.sha256)
    with pytest.raises(AuditChainBrokenError, match="entry 4 does not follow"):
        verify_chain(_stored(records, 3), head, forged)
    changed = _stored(records, 3)
    record = json.loads(changed[1][1])
    record["entry"]["result"] = False
    changed[1] = (changed[1][0], json.dumps(record).encode())
    with pytest.raises(AuditChainBrokenError, match="entry 5 was changed"):
        verify_chain(changed, head, anchor)


def test_a_changed_exported_entry_is_detected() -> None:
    records, _ = _log(8)
    files, anchor = _cut(records, [3, 3])
    name, content = files[0]
    files[0] = (name, content.replace(b'"call 2"', b'"call X"'))
    with pytest.raises(AuditChainBrokenError, match=f"export {name}: entry 2 was changed"):
        verify_exports(files, anchor)


def test_a_rewritten_newest_export_is_detected_by_its_hash() -> None:
    records, _ = _log(6)
    files, anchor = _cut(records, [2, 3])
    name, content = files[1]
    files[1] = (name, content + b"\n")
    with pytest.raises(AuditChainBrokenError, match="not the file the log is anchored to, or was changed"):
        verify_exports(files, anchor)


@pytest.mark.parametrize("removed", [0, 1, 2])
def test_removing_a_whole_export_segment_is_detected(removed: int) -> None:
    records, _ = _log(9)
    files, anchor = _cut(records, [3, 3, 3])
    del files[removed]
    with pytest.raises(AuditChainBrokenError, match="missing"):
        verify_exports(files, anchor)
    with pytest.raises(AuditChainBrokenError, match="export files are missing"):
        verify_exports([], anchor)


def test_exports_not_yet_anchored_are_left_out_and_an_interrupted_cut_is_matched() -> None:
    records, head = _log(8)
    files, _ = _cut(records, [3])
    name, content = _export(records[3:6])  # a cut that wrote its file, then deleted entries 4 and 5 only
    interrupted = ChainAnchor(5, records[4].digest, name, hashlib.sha256(content).hexdigest())
    pending = _export(records[6:8])  # written by a cut that never committed
    count, past = verify_exports([*files, (name, content), pending], interrupted)
    assert count == 5 and past == {6: records[5].digest}
    assert verify_chain(_stored(records, 5), head, interrupted, past) == 3
    other, _ = _log(8)
    with pytest.raises(AuditChainBrokenError, match="entry 6 differs from its exported copy"):
        verify_chain(_stored(records, 5), head, interrupted, {6: other[0].digest})
