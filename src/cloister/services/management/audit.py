"""Audit log: store entries in a hash chain and search them (reference §13).

Teaclave kept a tantivy index; here each entry is one record under ``audit-<sequence>``, chained
to the one before (``cloister.model.audit``) so ``cloister audit verify`` detects tampering.
Queries use tantivy's language (``audit_query``) and scan the entries, newest first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from cloister.errors import FailedOperationError
from cloister.model.access import AUDIT_LOG_QUERY, Subject
from cloister.model.audit import AuditEntry, ChainAnchor, ChainedEntry, ChainHead
from cloister.rpc.authorizer import Authorizer, require
from cloister.services.management.audit_query import QuerySyntaxError, parse_query
from cloister.storage.client import StorageClient
from cloister.storage.ops import Put
from cloister.storage.records import decode, encode_json, put

logger = logging.getLogger(__name__)

ENTRY_PREFIX = b"audit"
_IP_BYTES = 16
_MICROS_PER_SECOND = 1_000_000


def _error(reason: str) -> FailedOperationError:
    return FailedOperationError(f"audit log error, reason: {reason}")


HEAD_KEY = b"chain-audit-head"
ANCHOR_KEY = b"chain-audit-anchor"
"""Where the stored log starts once retention has cut older entries (``ChainAnchor``)."""
_DELIVERED_PREFIX = b"chain-audit-delivered-"

SpoolPosition = tuple[str, int]
"""A shipping service's spool name and the sequence number of a batch's first entry."""


def delivered_key(source: str) -> bytes:
    """Where the highest sequence number stored from ``source``'s spool is kept."""
    return _DELIVERED_PREFIX + source.encode()


def entry_key(seq: int) -> bytes:
    return b"audit-%020d" % seq


def entry_seq(key: bytes) -> int:
    """The sequence number in an :func:`entry_key`."""
    return int(key.split(b"-", 1)[1])


def load_head(raw: bytes | None) -> ChainHead:
    """The stored chain head; an empty chain when none is stored yet."""
    return decode(raw, ChainHead.from_json) or ChainHead()


def load_anchor(raw: bytes | None) -> ChainAnchor:
    """The stored anchor; the chain's beginning when nothing was ever cut."""
    return decode(raw, ChainAnchor.from_json) or ChainAnchor()


def _newest_first(entries: list[tuple[int, AuditEntry]]) -> list[AuditEntry]:
    """Newer seconds first; within one second in the order written.

    Teaclave's index sorts by a date of one-second precision, and its tests expect two entries
    of the same second to come back oldest first (§13.3).
    """
    ordered = sorted(entries, key=lambda pair: (-(pair[1].microsecond // _MICROS_PER_SECOND), pair[0]))
    return [entry for _, entry in ordered]


class AuditLog:
    def __init__(self, storage: StorageClient, authorizer: Authorizer) -> None:
        self._storage = storage
        self._authorizer = authorizer
        self._lock = asyncio.Lock()
        self._head: ChainHead | None = None
        self._delivered: dict[str, int] = {}

    async def save(self, entries: Sequence[AuditEntry], source: SpoolPosition | None = None) -> None:
        """Append a batch to the chain in one commit; one malformed entry rejects the whole batch.

        With ``source`` (the shipping spool and the batch's first sequence number), entries that
        source already delivered are skipped, and its highest delivered number is stored in the
        same commit: a batch shipped again after a crash is not stored twice.
        """
        for entry in entries:
            if len(entry.ip) != _IP_BYTES:
                raise _error("failed to transform entries: ip must be 16 bytes")
        if not entries:
            return
        async with self._lock:
            try:
                await self._append(entries, source)
            except BaseException:
                # The commit may or may not have been applied: read the head and marks afresh.
                self._head = None
                self._delivered.clear()
                raise

    async def _append(self, entries: Sequence[AuditEntry], source: SpoolPosition | None) -> None:
        if self._head is None:
            self._head = load_head(await self._storage.get(HEAD_KEY))
        ops = []
        if source is not None:
            name, first = source
            if name not in self._delivered:
                raw = await self._storage.get(delivered_key(name))
                self._delivered[name] = int(json.loads(raw)["seq"]) if raw is not None else 0
            skip = max(0, self._delivered[name] - first + 1)
            if skip:
                logger.info("skipping %d audit entries %s delivered before", min(skip, len(entries)), name)
            entries = entries[skip:]
            if not entries:
                return
            last = first + skip + len(entries) - 1
            ops.append(Put(delivered_key(name), encode_json({"seq": last})))
        chained, head = self._head.extend(entries)
        await self._storage.commit([*(put(entry_key(c.seq), c) for c in chained), put(HEAD_KEY, head), *ops])
        self._head = head
        if source is not None:
            self._delivered[source[0]] = last

    async def query(self, subject: Subject, query: str, limit: int) -> list[AuditEntry]:
        """At most ``limit`` entries matching ``query``, newest first."""
        await require(self._authorizer, subject, AUDIT_LOG_QUERY)
        if limit <= 0:
            raise _error("limit must be positive")
        try:
            parsed = parse_query(query)
        except QuerySyntaxError as exc:
            raise _error(f"failed to query logs: {exc}") from None
        keys = await self._storage.keys_with_prefix(ENTRY_PREFIX)
        found: list[tuple[int, AuditEntry]] = []
        for value in await self._storage.read(keys):
            if value is None:
                continue
            record = ChainedEntry.from_json(json.loads(value.value))
            if parsed.matches(record.entry):
                found.append((record.seq, record.entry))
        return _newest_first(found)[:limit]
