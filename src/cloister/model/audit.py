"""Audit entries and the hash chain that makes the log tamper-evident.

Every stored entry carries its sequence number and the hash of the one before, and its own hash
covers both, so changing, removing or reordering a stored entry breaks the chain at that point;
the chain's head (count and last hash) is stored apart and can be anchored elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)


@dataclass(frozen=True)
class AuditEntry:
    """One recorded call or decision (reference §13.1)."""

    microsecond: int
    """When, in µs since the epoch."""
    ip: bytes
    """The client's address, 16 bytes (an IPv4 address as ``::a.b.c.d``)."""
    user: str
    """Who called, as ``{ user: <id>, role: <role> }``; empty when authentication failed."""
    message: str
    """The API (``register_function``), with what went wrong when it failed."""
    result: bool
    """Whether it succeeded."""

    def to_json(self) -> dict[str, Any]:
        return {
            "microsecond": self.microsecond,
            "ip": list(self.ip),
            "user": self.user,
            "message": self.message,
            "result": self.result,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry:
        return cls(data["microsecond"], bytes(data["ip"]), data["user"], data["message"], data["result"])


def _canonical(entry: AuditEntry) -> bytes:
    return json.dumps(entry.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(previous: bytes, seq: int, entry: AuditEntry) -> bytes:
    return hashlib.sha256(previous + seq.to_bytes(8, "big") + _canonical(entry)).digest()


@dataclass(frozen=True)
class ChainedEntry:
    seq: int
    entry: AuditEntry
    previous: bytes
    digest: bytes

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "entry": self.entry.to_json(), "prev": self.previous.hex(), "hash": self.digest.hex()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainedEntry:
        return cls(
            data["seq"], AuditEntry.from_json(data["entry"]), bytes.fromhex(data["prev"]), bytes.fromhex(data["hash"])
        )


@dataclass(frozen=True)
class ChainHead:
    count: int = 0
    digest: bytes = GENESIS

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "hash": self.digest.hex()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainHead:
        return cls(data["count"], bytes.fromhex(data["hash"]))

    def extend(self, entries: Iterable[AuditEntry]) -> tuple[list[ChainedEntry], ChainHead]:
        chained, previous, seq = [], self.digest, self.count
        for entry in entries:
            seq += 1
            digest = chain_hash(previous, seq, entry)
            chained.append(ChainedEntry(seq, entry, previous, digest))
            previous = digest
        return chained, ChainHead(seq, previous)


@dataclass(frozen=True)
class AuditRecord:
    """An entry with its sequence number: numbers start at 1 and follow the order entries were stored."""

    seq: int
    entry: AuditEntry


@dataclass(frozen=True)
class AuditPage:
    """Entries after a sequence number, oldest first, and where the next page starts."""

    records: tuple[AuditRecord, ...]
    next_after: int
    """Pass it as ``after`` for the next page: every entry up to it has been looked at."""
    head: int
    """The newest entry's number when the page was read."""
    cut_through: int
    """Retention deleted the entries up to this number from storage (0: none); its export files hold them."""

    @property
    def caught_up(self) -> bool:
        """Whether the page reached the newest entry: a next page would hold only entries stored since."""
        return self.next_after >= self.head


@dataclass(frozen=True)
class ChainAnchor:
    """Where the stored log starts once older entries were exported and deleted.

    ``seq`` and ``digest`` are those of the last deleted entry (0 and GENESIS before any cut);
    ``export`` names the export file holding it and ``sha256`` is that file's hash, so the
    exported segments chain into the stored remainder and the newest of them cannot change.
    """

    seq: int = 0
    digest: bytes = GENESIS
    export: str = ""
    sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.digest.hex(), "export": self.export, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainAnchor:
        return cls(data["seq"], bytes.fromhex(data["hash"]), data["export"], data["sha256"])


class AuditChainBrokenError(Exception):
    """The stored log does not verify; ``message`` says where and how."""


def _parse(raw: bytes, where: str) -> ChainedEntry:
    try:
        return ChainedEntry.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        raise AuditChainBrokenError(f"{where} is not a valid audit record") from None


def verify_chain(
    records: Iterable[tuple[int, bytes]],
    head: ChainHead,
    anchor: ChainAnchor | None = None,
    exported: Mapping[int, bytes] | None = None,
) -> int:
    """Check ``(sequence number in the key, stored JSON)`` pairs in key order against ``head``.

    The stored log starts right after ``anchor`` (the beginning of the chain without one).
    ``exported`` holds digests :func:`verify_exports` found for entries past the anchor (a cut
    interrupted half-way), which the stored entries must match. Returns the number of entries verified.

    Raises:
        AuditChainBrokenError: an entry was changed, removed, reordered or added.
    """
    anchor = anchor or ChainAnchor()
    exported = exported or {}
    previous, expected = anchor.digest, anchor.seq + 1
    for key_seq, raw in records:
        record = _parse(raw, f"entry {key_seq}")
        if key_seq != expected or record.seq != key_seq:
            what = "missing" if key_seq > expected else "out of order"
            raise AuditChainBrokenError(f"entry {expected} is {what} (found entry {record.seq} at position {key_seq})")
        if record.previous != previous:
            raise AuditChainBrokenError(f"entry {key_seq} does not follow entry {key_seq - 1} (reordered or replaced)")
        if chain_hash(previous, record.seq, record.entry) != record.digest:
            raise AuditChainBrokenError(f"entry {key_seq} was changed after it was written")
        if key_seq in exported and exported[key_seq] != record.digest:
            raise AuditChainBrokenError(f"entry {key_seq} differs from its exported copy")
        previous, expected = record.digest, expected + 1
    last = expected - 1
    if last != head.count or previous != head.digest:
        raise AuditChainBrokenError(
            f"the log holds {last - anchor.seq} entries after entry {anchor.seq} but its head records "
            f"{head.count - anchor.seq}: entries were removed or added at the end"
        )
    return last - anchor.seq


def verify_exports(segments: Iterable[tuple[str, bytes]], anchor: ChainAnchor) -> tuple[int, dict[int, bytes]]:
    """Check export files (``(name, content)``, oldest first) chain from the first entry into ``anchor``.

    A file that starts after the anchor was written by a cut that never committed and is left
    out. Returns the number of entries verified up to the anchor and the digests of exported
    entries past it, for :func:`verify_chain` to compare with the stored ones.

    Raises:
        AuditChainBrokenError: an exported entry was changed, a file removed, reordered or
            changed, or the exports do not reach the anchor.
    """
    previous, expected, anchored = GENESIS, 1, anchor.seq == 0
    past_anchor: dict[int, bytes] = {}
    for name, content in segments:
        lines = content.splitlines()
        if not lines:
            raise AuditChainBrokenError(f"export {name} is empty")
        first = _parse(lines[0], f"the first line of export {name}").seq
        if first > anchor.seq:
            continue
        if first != expected:
            what = f"entries {expected} to {first - 1} are missing" if first > expected else "it overlaps another"
            raise AuditChainBrokenError(f"export {name} starts at entry {first}: {what} (an export file was removed?)")
        for number, line in enumerate(lines, 1):
            record = _parse(line, f"line {number} of export {name}")
            if record.seq != expected:
                raise AuditChainBrokenError(f"export {name}: entry {expected} is missing or out of order")
            if record.previous != previous or chain_hash(previous, record.seq, record.entry) != record.digest:
                raise AuditChainBrokenError(f"export {name}: entry {record.seq} was changed or replaced")
            if record.seq == anchor.seq:
                if record.digest != anchor.digest:
                    raise AuditChainBrokenError(f"export {name}: entry {record.seq} is not the anchored entry")
                if name != anchor.export or hashlib.sha256(content).hexdigest() != anchor.sha256:
                    raise AuditChainBrokenError(f"export {name} is not the file the log is anchored to, or was changed")
                anchored = True
            elif record.seq > anchor.seq:
                past_anchor[record.seq] = record.digest
            previous, expected = record.digest, expected + 1
    if not anchored:
        raise AuditChainBrokenError(
            f"the exports end at entry {expected - 1}, but entries up to {anchor.seq} were exported "
            f"(to {anchor.export} last): export files are missing"
        )
    return min(expected - 1, anchor.seq), past_anchor
