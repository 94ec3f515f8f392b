"""Audit log: store entries in a hash chain, index them, and search them (reference §13).

Teaclave kept a tantivy index; here each entry is one record under ``audit-<sequence>``, chained
to the one before (``cloister.model.audit``) so ``cloister audit verify`` detects tampering, and
committed with its records in the search index (``audit_index``). Queries use tantivy's language
(``audit_query``) and read only the entries the index points to (``audit_search``): newest first
as Teaclave answers, or a page after a sequence number (numbers start at 1 and have no gaps).
Entries stored before the index existed are indexed once, in the background, block by block.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from cloister.errors import FailedOperationError, InvalidArgumentError
from cloister.model.access import AUDIT_LOG_QUERY, Subject
from cloister.model.audit import AuditEntry, AuditPage, ChainAnchor, ChainedEntry, ChainHead
from cloister.rpc.authorizer import Authorizer, require
from cloister.services.management.audit_index import KEY_KEY, STATE_KEY, AuditIndex, IndexState, block_end
from cloister.services.management.audit_query import Query, QuerySyntaxError, parse_query
from cloister.services.management.audit_search import AuditSearch, Page, Scope
from cloister.services.management.locks import retrying
from cloister.storage.client import KeyValueStore
from cloister.storage.ops import Check, Op, Put, Versioned
from cloister.storage.records import decode, encode_json, put

logger = logging.getLogger(__name__)

ENTRY_PREFIX = b"audit"
_IP_BYTES = 16
MAX_ANSWER_ENTRIES = 100_000
"""QueryAuditLogs answers at most this many entries whatever its limit (and at most 3 MiB)."""
DEFAULT_PAGE_ENTRIES = 100
MAX_PAGE_ENTRIES = 10_000


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


class AuditLog:
    def __init__(self, storage: KeyValueStore, authorizer: Authorizer) -> None:
        self._storage = storage
        self._authorizer = authorizer
        self._lock = asyncio.Lock()
        self._indexed = False
        """Whether the index was found complete (it then stays so: new entries are indexed as stored)."""
        self._index = AuditIndex(storage)
        self._search = AuditSearch(self._index, self._read_entries)

    @property
    def index_built(self) -> bool:
        """Whether every stored entry is indexed (entries from before the index included)."""
        return self._indexed

    async def save(self, entries: Sequence[AuditEntry], source: SpoolPosition | None = None) -> None:
        """Append a batch to the chain, and to the index, in one commit; one malformed entry rejects
        the whole batch.

        With ``source`` (the shipping spool and the batch's first sequence number), entries that
        source already delivered are skipped, and its highest delivered number is stored in the
        same commit: a batch shipped again after a crash is not stored twice.

        The commit holds only if the chain's head, the index records and the delivery mark are
        as read, so appends by several management replicas make one chain: the one that loses
        the race reads the new head and appends after it.
        """
        for entry in entries:
            if len(entry.ip) != _IP_BYTES:
                raise _error("failed to transform entries: ip must be 16 bytes")
        if not entries:
            return

        async def attempt() -> None:
            async with self._lock:
                try:
                    await self._append(entries, source)
                finally:
                    self._index.forget()

        await retrying(attempt)

    async def _load_head(self, *more: bytes) -> tuple[ChainHead, Check, IndexState, list[Versioned | None]]:
        """The chain's head and the index's state, and the records ``more`` names, read together;
        the check that the head is unchanged."""
        raw_head, raw_state, raw_key, *others = await self._storage.read([HEAD_KEY, STATE_KEY, KEY_KEY, *more])
        head = load_head(raw_head.value if raw_head is not None else None)
        return head, Check.of(HEAD_KEY, raw_head), self._index.loaded(head.count, raw_state, raw_key), others

    async def _append(self, entries: Sequence[AuditEntry], source: SpoolPosition | None) -> None:
        head, unchanged, _, others = await self._load_head(*([delivered_key(source[0])] if source else []))
        ops: list[Op] = [unchanged]
        if source is not None:
            name, first = source
            (raw,) = others
            delivered = int(json.loads(raw.value)["seq"]) if raw is not None else 0
            skip = max(0, delivered - first + 1)
            if skip:
                logger.info("skipping %d audit entries %s delivered before", min(skip, len(entries)), name)
            entries = entries[skip:]
            if not entries:
                return
            last = first + skip + len(entries) - 1
            ops += [Check.of(delivered_key(name), raw), Put(delivered_key(name), encode_json({"seq": last}))]
        chained, new_head = head.extend(entries)
        index_ops = await self._index.ops_for(chained)
        await self._storage.commit(
            [*ops, *(put(entry_key(c.seq), c) for c in chained), put(HEAD_KEY, new_head), *index_ops]
        )

    async def build_index(self) -> None:
        """Index the entries stored before the index existed, a block per commit; returns once every
        stored entry is indexed. Queries wait for it; saves go on between its commits."""
        while not self.index_built:

            async def attempt() -> None:
                async with self._lock:
                    try:
                        await self._backfill_block()
                    finally:
                        self._index.forget()

            await retrying(attempt)

    async def _backfill_block(self) -> None:
        # Not checked against the head: entries appended meanwhile touch only the index records
        # that ops_for checks, so the two conflict only where they would lose each other's bits.
        _, _, state, _ = await self._load_head()
        self._indexed = state.complete
        if state.complete:
            return
        anchor = load_anchor(await self._storage.get(ANCHOR_KEY))
        start = max(state.backfilled, anchor.seq) + 1
        end = min(state.backfill_until, block_end(start))
        records = [r for r in await self._read_entries(range(start, end + 1)) if r is not None]
        ops = await self._index.ops_for(records)
        done = max(end, state.backfilled)
        await self._storage.commit([*ops, self._index.state_op(done)])
        self._indexed = done >= state.backfill_until
        if self._indexed:
            logger.info("audit index: the %d entries stored before it are indexed", state.backfill_until)

    async def _read_entries(self, numbers: Sequence[int]) -> list[ChainedEntry | None]:
        values = await self._storage.read([entry_key(n) for n in numbers])
        return [None if v is None else ChainedEntry.from_json(json.loads(v.value)) for v in values]

    async def _scope(self, after: int) -> tuple[Scope, ChainAnchor]:
        """What a search may answer now: the stored entries after ``after``, all of them indexed."""
        await self.build_index()
        raw_head, raw_anchor = await self._storage.read([HEAD_KEY, ANCHOR_KEY])
        head = load_head(raw_head.value if raw_head is not None else None)
        anchor = load_anchor(raw_anchor.value if raw_anchor is not None else None)
        return Scope(max(after, anchor.seq), head.count), anchor

    async def query(self, subject: Subject, query: str, limit: int) -> list[AuditEntry]:
        """At most ``limit`` entries matching ``query``, newest first (Teaclave's QueryAuditLogs).

        The answer also stops at :data:`MAX_ANSWER_ENTRIES` entries and at 3 MiB, below the
        4 MiB a public answer may have; :meth:`query_page` reaches the rest.
        """
        await require(self._authorizer, subject, AUDIT_LOG_QUERY)
        if limit <= 0:
            raise _error("limit must be positive")
        try:
            parsed = parse_query(query)
        except QuerySyntaxError as exc:
            raise _error(f"failed to query logs: {exc}") from None
        scope, _ = await self._scope(0)
        return await self._search.newest_first(parsed, min(limit, MAX_ANSWER_ENTRIES), scope)

    async def query_page(self, subject: Subject, query: str, limit: int, after: int) -> AuditPage:
        """The entries matching ``query`` numbered above ``after``, oldest first, a page at a time.

        Args:
            limit: at most this many entries (0: :data:`DEFAULT_PAGE_ENTRIES`); a page also ends
                at 3 MiB, and after reading a bounded number of entries that do not match.
            after: the ``next_after`` of the previous page, 0 for the first. Pages that follow
                each other's cursors hold every matching entry exactly once, entries stored
                meanwhile included.

        Raises:
            InvalidArgumentError: the query does not parse, or ``limit`` is too large.
        """
        await require(self._authorizer, subject, AUDIT_LOG_QUERY)
        if limit > MAX_PAGE_ENTRIES:
            raise InvalidArgumentError(
                f"limit {limit} is too large: at most {MAX_PAGE_ENTRIES} (0 for {DEFAULT_PAGE_ENTRIES})"
            )
        parsed = _parse_argument(query)
        scope, anchor = await self._scope(after)
        page: Page = await self._search.page(parsed, limit or DEFAULT_PAGE_ENTRIES, scope)
        return AuditPage(tuple(page.records), page.next_after, scope.upto, anchor.seq)


def _parse_argument(query: str) -> Query:
    try:
        return parse_query(query)
    except QuerySyntaxError as exc:
        raise InvalidArgumentError(f"query is not valid: {exc}") from None
