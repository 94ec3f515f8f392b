"""Audit entries and the hash chain that makes the log tamper-evident.

Every stored entry carries its sequence number and the hash of the one before, and its own hash
covers both, so changing, removing or reordering a stored entry breaks the chain at that point;
the chain's head (count and last hash) is stored apart and can be anchored elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)


@dataclass(frozen=True)
class AuditEntry:
    microsecond: int
    ip: bytes
    user: str
    message: str
    result: bool

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


class AuditChainBrokenError(Exception):
    """The stored log does not verify; ``message`` says where and how."""


def verify_chain(records: Iterable[tuple[int, bytes]], head: ChainHead) -> int:
    """Check ``(sequence number in the key, stored JSON)`` pairs in key order against ``head``.

    Returns the number of entries verified.

    Raises:
        AuditChainBrokenError: an entry was changed, removed, reordered or added.
    """
    previous, expected = GENESIS, 1
    for key_seq, raw in records:
        try:
            record = ChainedEntry.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            raise AuditChainBrokenError(f"entry {key_seq} is not a valid audit record") from None
        if key_seq != expected or record.seq != key_seq:
            what = "missing" if key_seq > expected else "out of order"
            raise AuditChainBrokenError(f"entry {expected} is {what} (found entry {record.seq} at position {key_seq})")
        if record.previous != previous:
            raise AuditChainBrokenError(f"entry {key_seq} does not follow entry {key_seq - 1} (reordered or replaced)")
        if chain_hash(previous, record.seq, record.entry) != record.digest:
            raise AuditChainBrokenError(f"entry {key_seq} was changed after it was written")
        previous, expected = record.digest, expected + 1
    count = expected - 1
    if count != head.count or previous != head.digest:
        raise AuditChainBrokenError(
            f"the log holds {count} entries but its head records {head.count}: entries were removed or added at the end"
        )
    return count
