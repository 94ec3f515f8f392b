"""Answering audit queries from the index: newest first up to a limit (Teaclave's QueryAuditLogs),
or a page of entries after a sequence number (Cloister's cursor).

A parsed query is evaluated on each block's postings as two bitmaps: the entries that surely
match and those that may. They differ only where the index cannot decide alone, a phrase (its
words are all there, but in this order?) or a clause over one. Every entry answered is read and
checked against the query itself, so the index only ever narrows which entries are read, and
an answer never holds an entry the query does not match.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cloister.model.audit import AuditEntry, AuditRecord, ChainedEntry
from cloister.services.management.audit_index import (
    AuditIndex,
    BlockData,
    Term,
    TermTagger,
    block_mask,
    block_of,
    offsets_of,
)
from cloister.services.management.audit_query import (
    BooleanQuery,
    DateQuery,
    IPQuery,
    MatchAll,
    MatchNothing,
    Occur,
    Query,
    ResultQuery,
    TextQuery,
)

PAGE_BYTES = 3 * 1024 * 1024
"""An answer ends early rather than outgrow the 4 MiB a public answer may have."""
MAX_EXAMINED = 20_000
"""The most entries one page reads and checks; a page that reaches it ends there, with its cursor."""
_MAX_BATCH_BLOCKS = 64
_FETCH_CHUNK = 1_000
_ENTRY_OVERHEAD = 64
"""Bytes an entry takes on the wire beyond its text and address: field tags, lengths, numbers."""
_MICROS = 1_000_000

Bounds = tuple[int, int]
"""Bitmaps of a block's entries: those that surely match, and those that may."""


def entry_bytes(entry: AuditEntry) -> int:
    """An upper bound on the bytes an entry takes in an answer."""
    return (
        len(entry.message.encode("utf-8", "surrogatepass"))
        + len(entry.user.encode("utf-8", "surrogatepass"))
        + (len(entry.ip) + _ENTRY_OVERHEAD)
    )


@dataclass(frozen=True)
class Scope:
    """The entries a search may answer: numbers above ``after``, up to ``upto``."""

    after: int
    upto: int


@dataclass(frozen=True)
class Page:
    records: list[AuditRecord]
    """Matching entries, oldest first."""
    next_after: int
    """Every entry up to this number was looked at: the next page starts after it."""


def query_terms(query: Query) -> set[Term]:
    """The terms whose postings the query reads."""
    if isinstance(query, TextQuery):
        return {(query.field, word) for _, word in query.terms}
    if isinstance(query, ResultQuery):
        return {("result", "true" if query.value else "false")}
    if isinstance(query, IPQuery):
        return {("ip", address.hex()) for address in query.addresses}
    if isinstance(query, BooleanQuery):
        return {term for _, child in query.clauses for term in query_terms(child)}
    return set()


def date_ranges(query: Query) -> list[DateQuery]:
    if isinstance(query, BooleanQuery):
        return [found for _, child in query.clauses for found in date_ranges(child)]
    return [query] if isinstance(query, DateQuery) else []


def _splits(query: DateQuery, span: tuple[int, int] | None) -> bool:
    """Whether a block of this span has entries both in and out of the range: then only its times tell."""
    if span is None or not query.overlaps(*span):
        return False
    return not (query.contains(span[0]) and query.contains(span[1]))


def bounds(query: Query, block: BlockData, tagger: TermTagger) -> Bounds:
    """Which of ``block``'s in-scope entries surely match ``query``, and which may."""
    present = block.present
    if isinstance(query, MatchAll):
        return present, present
    if isinstance(query, MatchNothing):
        return 0, 0
    if isinstance(query, TextQuery | ResultQuery | IPQuery):
        return _postings(query, block, tagger)
    if isinstance(query, DateQuery):
        return _dates(query, block)
    if isinstance(query, BooleanQuery):
        return _boolean(query, block, tagger)
    return 0, present  # a query the index knows nothing about: every entry is read and checked


def _postings(query: TextQuery | ResultQuery | IPQuery, block: BlockData, tagger: TermTagger) -> Bounds:
    if isinstance(query, IPQuery):
        bits = 0
        for address in query.addresses:
            bits |= block.postings[tagger.tag(("ip", address.hex()))]
        return bits & block.present, bits & block.present
    if isinstance(query, ResultQuery):
        bits = block.postings[tagger.tag(("result", "true" if query.value else "false"))] & block.present
        return bits, bits
    bits = block.present
    for _, word in query.terms:
        bits &= block.postings[tagger.tag((query.field, word))]
    # One word is exact; a phrase needs its words in order, which only the entry shows.
    return (bits if len(query.terms) == 1 else 0), bits


def _dates(query: DateQuery, block: BlockData) -> Bounds:
    if block.span is None or not query.overlaps(*block.span):
        return 0, 0
    if query.contains(block.span[0]) and query.contains(block.span[1]):
        return block.present, block.present
    micros = block.micros
    if micros is None:  # times not read: every entry is read and checked
        return 0, block.present
    bits = 0
    for offset in offsets_of(block.present):
        if offset < len(micros) and query.contains(micros[offset]):
            bits |= 1 << offset
    return bits, bits


def _boolean(query: BooleanQuery, block: BlockData, tagger: TermTagger) -> Bounds:
    """Tantivy's rule on bitmaps: every must, no must-not, and a should unless there is a must."""
    must_sure = must_maybe = block.present
    not_sure = not_maybe = should_sure = should_maybe = 0
    has_must = False
    for occur, child in query.clauses:
        sure, maybe = bounds(child, block, tagger)
        if occur is Occur.MUST:
            has_must = True
            must_sure, must_maybe = must_sure & sure, must_maybe & maybe
        elif occur is Occur.MUST_NOT:
            not_sure, not_maybe = not_sure | sure, not_maybe | maybe
        else:
            should_sure, should_maybe = should_sure | sure, should_maybe | maybe
    if not has_must:
        must_sure, must_maybe = must_sure & should_sure, must_maybe & should_maybe
    return must_sure & ~not_maybe, must_maybe & ~not_sure


EntryReader = Callable[[Sequence[int]], Awaitable[list[ChainedEntry | None]]]
"""Reads stored entries by sequence number (None for one retention has cut)."""


class AuditSearch:
    """Runs parsed queries over the index, then reads and checks the entries it points to."""

    def __init__(self, index: AuditIndex, read_entries: EntryReader) -> None:
        self._index = index
        self._read_entries = read_entries

    async def newest_first(self, query: Query, limit: int, scope: Scope) -> list[AuditEntry]:
        """At most ``limit`` matching entries (and at most :data:`PAGE_BYTES`), newest first.

        Newer seconds first and, within a second, in the order stored, as Teaclave's index sorts.
        Blocks are read newest first until no unread block can hold an entry that outranks the
        ``limit``-th match found: an unread block's entries all have lower numbers, so it can
        only outrank a match with its latest second or a later one.
        """
        if scope.upto <= scope.after:
            return []
        numbers = list(range(block_of(scope.upto), block_of(scope.after + 1) - 1, -1))
        unread_latest = _latest_seconds(await self._index.spans(numbers))
        pool: list[tuple[int, int, bool]] = []  # (-second, number, surely matches), best first once sorted
        checked: dict[int, AuditEntry | None] = {}
        done, step = 0, 2
        while True:
            batch = numbers[done : done + step]
            done, step = done + len(batch), min(step * 2, _MAX_BATCH_BLOCKS)
            found = await self._blocks(query, batch, scope)
            await self._index.read_dates([block for block, _, maybe in found if maybe])
            for block, sure, maybe in found:
                micros = block.micros if block.micros is not None else ()
                for offset in offsets_of(maybe):
                    second = micros[offset] // _MICROS if offset < len(micros) else 0
                    pool.append((-second, block.seq(offset), bool(sure >> offset & 1)))
            pool.sort()
            answer = await self._best(query, pool, checked, limit, unread_latest[done])
            if answer is not None:
                return answer

    async def _best(
        self,
        query: Query,
        pool: list[tuple[int, int, bool]],
        checked: dict[int, AuditEntry | None],
        limit: int,
        unread_latest: int | None,
    ) -> list[AuditEntry] | None:
        """The answer, if the pool decides it; None if more blocks must be read first.

        Walks the pool best first, reading and checking entries as it goes, up to the first
        entry an unread block could outrank (one of ``unread_latest``'s second or earlier).
        """
        while True:
            answer: list[AuditEntry] = []
            to_read: list[int] = []
            size = surely = 0
            full = False
            for negative_second, seq, sure in pool:
                if unread_latest is not None and -negative_second <= unread_latest:
                    break
                if seq not in checked:
                    to_read.append(seq)
                    surely += sure
                    if len(to_read) >= _FETCH_CHUNK:
                        break
                elif (entry := checked[seq]) is not None:
                    size += entry_bytes(entry)
                    if answer and size > PAGE_BYTES:
                        full = True
                        break
                    answer.append(entry)
                if len(answer) + surely >= limit:
                    full = True
                    break
            if to_read:
                checked.update(await self._check(query, to_read))
                continue
            return answer if full or unread_latest is None else None

    async def page(self, query: Query, limit: int, scope: Scope) -> Page:
        """Matching entries above ``scope.after``, oldest first: at most ``limit`` of them, at most
        :data:`PAGE_BYTES`, and no more than :data:`MAX_EXAMINED` read."""
        records: list[AuditRecord] = []
        size = examined = 0
        numbers = list(range(block_of(scope.after + 1), block_of(scope.upto) + 1)) if scope.upto > scope.after else []
        done, step = 0, 2
        while done < len(numbers):
            batch = numbers[done : done + step]
            done, step = done + len(batch), min(step * 2, _MAX_BATCH_BLOCKS)
            found = await self._blocks(query, batch, scope)
            candidates = [block.seq(offset) for block, _, maybe in found for offset in offsets_of(maybe)]
            at = 0
            while at < len(candidates):
                chunk = candidates[at : at + min(_FETCH_CHUNK, max(limit - len(records), 1) + 16)]
                at += len(chunk)
                checked = await self._check(query, chunk)
                for seq in chunk:
                    entry = checked[seq]
                    if entry is not None:
                        size += entry_bytes(entry)
                        if records and size > PAGE_BYTES:
                            return Page(records, records[-1].seq)
                        records.append(AuditRecord(seq, entry))
                        if len(records) >= limit:
                            return Page(records, seq)
                examined += len(chunk)
                if examined >= MAX_EXAMINED:
                    return Page(records, chunk[-1])
        return Page(records, max(scope.upto, scope.after))

    async def _blocks(self, query: Query, numbers: Sequence[int], scope: Scope) -> list[tuple[BlockData, int, int]]:
        masks = [(number, block_mask(number, scope.after, scope.upto)) for number in numbers]
        ranges = date_ranges(query)
        blocks = await self._index.read_blocks(masks, query_terms(query), spans=bool(ranges))
        if ranges:  # times only for the blocks a range cuts through; spans decide the others
            await self._index.read_dates([b for b in blocks if any(_splits(r, b.span) for r in ranges)])
        return [(block, *bounds(query, block, self._index.tagger)) for block in blocks]

    async def _check(self, query: Query, numbers: Sequence[int]) -> dict[int, AuditEntry | None]:
        """The entries numbered ``numbers`` that match ``query``; None for the others and for cut ones."""
        records = await self._read_entries(numbers)
        return {
            seq: record.entry if record is not None and record.seq == seq and query.matches(record.entry) else None
            for seq, record in zip(numbers, records, strict=True)
        }


def _latest_seconds(spans: Sequence[tuple[int, int] | None]) -> list[int | None]:
    """For each position, the latest second among the blocks from there on (None past the end)."""
    latest: list[int | None] = [None] * (len(spans) + 1)
    for at in range(len(spans) - 1, -1, -1):
        span, after = spans[at], latest[at + 1]
        here = None if span is None else span[1] // _MICROS
        latest[at] = here if after is None else after if here is None else max(here, after)
    return latest
