"""The audit log's search index: keyed hashes of terms as keys, sealed bitmaps of entries as values.

Entries are grouped in blocks of :data:`BLOCK_ENTRIES` consecutive sequence numbers. For each
term an entry holds (a token of its message or user, tokenized as queries are; its result; its
address), its block keeps one record ``audit_index-<block>-<tag>`` whose value says which of the
block's entries hold it. The tag is HMAC-SHA256 of the field and the term, cut to 128 bits, under
a random key management creates once and keeps in storage (sealed there like every value, so all
management replicas and a restored backup use the same key). Each block also keeps its entries'
times (``-dates``) and their earliest and latest (``-span``), for date ranges and newest-first
answers. Entries and their index records are written in one commit.

What someone who reads the database without the storage key learns: how many distinct terms
each block holds, which blocks share a term (equal tags), and from a value's length roughly how
many entries of a block hold it (lengths are rounded up to a power of two, and above 128 entries
all look alike); and, from the commit versions storage keeps in clear, which entries were written
with which tags, so which entries share a term (docs/audit.md). Never a term, a user id or a message.
"""

from __future__ import annotations

import hmac
import json
import os
import struct
import sys
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cloister.errors import InternalError
from cloister.model.audit import AuditEntry, ChainedEntry
from cloister.services.management.audit_query import tokenize
from cloister.storage.client import KeyValueStore
from cloister.storage.ops import Check, Delete, Op, Put, Versioned
from cloister.storage.records import encode_json

BLOCK_ENTRIES = 4096
"""Consecutive sequence numbers that share one set of index records."""
STATE_KEY = b"audit_index"
KEY_KEY = b"audit_index-key"
PRUNED_KEY = b"audit_index-pruned"
"""Below which block retention has deleted the index records (their entries are gone)."""
KEY_BYTES = 32
_TAG_BYTES = 16
_DENSE = b"\x01"
_SPARSE = b"\x02"
_SPARSE_MIN = 4
_SPARSE_MAX = 128
"""Above this many entries a posting is a bitmap; below, a list padded to a power of two."""
_SPAN = struct.Struct("<qq")
_DELETE_BATCH = 1_000
_CACHED = 50_000
"""Tags (and texts' tags) remembered; a full cache starts again empty."""

Term = tuple[str, str]
"""A field and one of its terms, as the index and the query language both spell it."""


def block_of(seq: int) -> int:
    return seq // BLOCK_ENTRIES


def block_end(seq: int) -> int:
    """The highest sequence number in ``seq``'s block."""
    return (block_of(seq) + 1) * BLOCK_ENTRIES - 1


def block_prefix(block: int) -> bytes:
    """The prefix every index record of ``block`` has, as ``keys_with_prefix`` takes it."""
    return b"audit_index-%010d" % block


def posting_key(block: int, tag: bytes) -> bytes:
    return block_prefix(block) + b"-" + tag


def dates_key(block: int) -> bytes:
    return block_prefix(block) + b"-dates"


def span_key(block: int) -> bytes:
    return block_prefix(block) + b"-span"


def block_mask(block: int, after: int, upto: int) -> int:
    """The bits of ``block``'s entries whose numbers are above ``after`` and at most ``upto``."""
    first = max(after + 1, block * BLOCK_ENTRIES)
    last = min(upto, block * BLOCK_ENTRIES + BLOCK_ENTRIES - 1)
    if last < first:
        return 0
    return ((1 << (last - first + 1)) - 1) << (first - block * BLOCK_ENTRIES)


def entry_terms(entry: AuditEntry) -> set[Term]:
    """The terms an entry is found by: what :mod:`audit_query` compares, field by field."""
    terms = {("message", token) for token in tokenize(entry.message) if token is not None}
    terms.update(("user", token) for token in tokenize(entry.user) if token is not None)
    terms.add(("result", "true" if entry.result else "false"))
    terms.add(("ip", entry.ip.hex()))
    return terms


class TermTagger:
    """Keyed hashes of terms: a record's key says which term it is for only to who holds the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise InternalError("the audit index key is damaged")
        self.key = key
        self._cache: dict[Term, bytes] = {}

        self._texts: dict[tuple[str, str], frozenset[bytes]] = {}

    def tag(self, term: Term) -> bytes:
        tag = self._cache.get(term)
        if tag is None:
            message = term[0].encode() + b"\x00" + term[1].encode("utf-8", "surrogatepass")
            tag = hmac.digest(self.key, message, "sha256")[:_TAG_BYTES].hex().encode()
            if len(self._cache) >= _CACHED:
                self._cache.clear()
            self._cache[term] = tag
        return tag

    def entry_tags(self, entry: AuditEntry) -> set[bytes]:
        """The tags of :func:`entry_terms`; messages and users repeat, so their tags are remembered."""
        tags = {self.tag(("result", "true" if entry.result else "false")), self.tag(("ip", entry.ip.hex()))}
        for field, text in (("message", entry.message), ("user", entry.user)):
            known = self._texts.get((field, text))
            if known is None:
                known = frozenset(self.tag((field, token)) for token in tokenize(text) if token is not None)
                if len(self._texts) >= _CACHED:
                    self._texts.clear()
                self._texts[field, text] = known
            tags.update(known)
        return tags


def offsets_of(bits: int) -> list[int]:
    """The positions of the set bits, lowest first."""
    found: list[int] = []
    if bits.bit_count() <= 64:
        while bits:
            lowest = bits & -bits
            found.append(lowest.bit_length() - 1)
            bits ^= lowest
        return found
    text = bin(bits)[:1:-1]
    at = text.find("1")
    while at >= 0:
        found.append(at)
        at = text.find("1", at + 1)
    return found


def encode_bits(bits: int) -> bytes:
    count = bits.bit_count()
    if count > _SPARSE_MAX:
        return _DENSE + bits.to_bytes(BLOCK_ENTRIES // 8, "little")
    capacity = max(_SPARSE_MIN, 1 << (count - 1).bit_length())
    padded = [*offsets_of(bits), *([0] * (capacity - count))]
    return _SPARSE + struct.pack(f"<H{capacity}H", count, *padded)


def decode_bits(raw: bytes) -> int:
    if raw[:1] == _DENSE and len(raw) == 1 + BLOCK_ENTRIES // 8:
        return int.from_bytes(raw[1:], "little")
    if raw[:1] == _SPARSE and len(raw) >= 3:
        (count,) = struct.unpack_from("<H", raw, 1)
        if 3 + 2 * count <= len(raw):
            bits = 0
            for offset in struct.unpack_from(f"<{count}H", raw, 3):
                bits |= 1 << offset
            return bits
    raise InternalError("an audit index record has an unknown format")


def encode_dates(micros: array[int]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - stored little-endian everywhere
        micros = array("q", micros)
        micros.byteswap()
    return micros.tobytes()


def decode_dates(raw: bytes) -> array[int]:
    if len(raw) % 8:
        raise InternalError("an audit index record has an unknown format")
    micros = array("q")
    micros.frombytes(raw)
    if sys.byteorder == "big":  # pragma: no cover
        micros.byteswap()
    return micros


def decode_span(raw: bytes) -> tuple[int, int]:
    if len(raw) != _SPAN.size:
        raise InternalError("an audit index record has an unknown format")
    earliest, latest = _SPAN.unpack(raw)
    return earliest, latest


@dataclass(frozen=True)
class IndexState:
    """How far the index reaches back: entries up to ``backfill_until`` were stored before it
    existed, and those up to ``backfilled`` have been indexed since."""

    backfill_until: int
    backfilled: int

    @property
    def complete(self) -> bool:
        return self.backfilled >= self.backfill_until

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "backfill_until": self.backfill_until, "backfilled": self.backfilled}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexState:
        if data.get("version") != 1:
            raise InternalError("the audit index was written by a newer Cloister")
        return cls(int(data["backfill_until"]), int(data["backfilled"]))


@dataclass
class BlockData:
    """What a query reads of one block: which entries are in scope and the postings it asked for."""

    number: int
    present: int
    postings: dict[bytes, int]
    micros: array[int] | None = None
    span: tuple[int, int] | None = None

    def seq(self, offset: int) -> int:
        return self.number * BLOCK_ENTRIES + offset


class AuditIndex:
    """Keeps the index records of new entries, and reads them for queries.

    The log's owner calls :meth:`load` and :meth:`ops_for` under its own lock (one writer), and
    :meth:`forget` when a commit fails, since it may or may not have been applied.
    """

    def __init__(self, storage: KeyValueStore) -> None:
        self._storage = storage
        self._tagger: TermTagger | None = None
        self._state: IndexState | None = None
        self._pending: list[Op] = []

    @property
    def state(self) -> IndexState | None:
        return self._state

    @property
    def tagger(self) -> TermTagger:
        if self._tagger is None:
            raise InternalError("the audit index is not loaded")
        return self._tagger

    def forget(self) -> None:
        """Read the state afresh before the next ops (the tagger stays: the key never changes)."""
        self._state, self._pending = None, []

    async def load(self, head: int) -> IndexState:
        """The index's state, begun now (to be committed with the next ops) if it does not exist yet.

        ``head`` is the number of the newest stored entry: those up to it are older than the index.
        """
        if self._state is not None:
            return self._state
        raw_state, raw_key = await self._storage.read([STATE_KEY, KEY_KEY])
        return self.loaded(head, raw_state, raw_key)

    def loaded(self, head: int, raw_state: Versioned | None, raw_key: Versioned | None) -> IndexState:
        """:meth:`load` from the state and key records read by the caller (with the chain's head).

        The ops of the next :meth:`ops_for` then check that the state is still as read: another
        management replica indexing meanwhile makes that commit conflict instead of losing bits.
        """
        pending: list[Op] = [Check.of(STATE_KEY, raw_state)]
        if raw_key is None:
            if raw_state is not None:
                raise InternalError("the audit index key is missing; delete the audit_index records to rebuild")
            key = os.urandom(KEY_BYTES)
            pending += [Check(KEY_KEY, 0), Put(KEY_KEY, key)]
        else:
            key = raw_key.value
        if raw_state is None:
            state = IndexState(head, 0)
            pending.append(Put(STATE_KEY, encode_json(state.to_json())))
        else:
            state = IndexState.from_json(json.loads(raw_state.value))
        if self._tagger is None or self._tagger.key != key:
            self._tagger = TermTagger(key)
        self._state, self._pending = state, pending
        return state

    def state_op(self, backfilled: int) -> Put:
        """The state after entries up to ``backfilled`` were indexed, to commit with their records."""
        if self._state is None:
            raise InternalError("the audit index is not loaded")
        return Put(STATE_KEY, encode_json(IndexState(self._state.backfill_until, backfilled).to_json()))

    def committed(self, backfilled: int | None = None) -> None:
        """The ops from :meth:`ops_for` (and a :meth:`state_op`) were committed."""
        self._pending = []
        if backfilled is not None and self._state is not None:
            self._state = IndexState(self._state.backfill_until, backfilled)

    async def ops_for(self, records: Sequence[ChainedEntry]) -> list[Op]:
        """The puts that add ``records`` to the index (read, merged, written back), with the index's
        creation if it is new."""
        tagger = self.tagger
        added: dict[int, dict[bytes, int]] = defaultdict(lambda: defaultdict(int))
        times: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for record in records:
            block, offset = divmod(record.seq, BLOCK_ENTRIES)
            postings = added[block]
            bit = 1 << offset
            for tag in tagger.entry_tags(record.entry):
                postings[tag] |= bit
            times[block].append((offset, record.entry.microsecond))
        keys = [posting_key(b, tag) for b, postings in added.items() for tag in postings]
        blocks = list(times)
        meta_keys = [key for b in blocks for key in (dates_key(b), span_key(b))]
        stored = await self._storage.read([*keys, *meta_keys])
        ops: list[Op] = [*self._pending, *(Check.of(k, v) for k, v in zip([*keys, *meta_keys], stored, strict=True))]
        values = iter(stored[: len(keys)])
        for block, postings in added.items():
            for tag, bits in postings.items():
                old = next(values)
                ops.append(Put(posting_key(block, tag), encode_bits(bits | _bits(old))))
        for index, block in enumerate(blocks):
            raw_dates, raw_span = stored[len(keys) + 2 * index], stored[len(keys) + 2 * index + 1]
            micros = decode_dates(raw_dates.value) if raw_dates is not None else array("q")
            for offset, at in times[block]:
                if len(micros) <= offset:
                    micros.extend([0] * (offset + 1 - len(micros)))
                micros[offset] = at
            stamps = [at for _, at in times[block]]
            earliest, latest = min(stamps), max(stamps)
            if raw_span is not None:
                old_earliest, old_latest = decode_span(raw_span.value)
                earliest, latest = min(earliest, old_earliest), max(latest, old_latest)
            ops.append(Put(dates_key(block), encode_dates(micros)))
            ops.append(Put(span_key(block), _SPAN.pack(earliest, latest)))
        return ops

    # --- reading ---------------------------------------------------------------------------

    async def spans(self, blocks: Sequence[int]) -> list[tuple[int, int] | None]:
        """Each block's earliest and latest time (µs); None for a block with no entries indexed."""
        stored = await self._storage.read([span_key(b) for b in blocks])
        return [None if value is None else decode_span(value.value) for value in stored]

    async def read_blocks(
        self, blocks: Sequence[tuple[int, int]], terms: Iterable[Term], spans: bool
    ) -> list[BlockData]:
        """``(block, in-scope mask)`` pairs with the postings of ``terms`` (and spans, if ``spans``)."""
        tags = sorted({self.tagger.tag(term) for term in terms})
        keys = [posting_key(b, tag) for b, _ in blocks for tag in tags]
        if spans:
            keys += [span_key(b) for b, _ in blocks]
        stored = await self._storage.read(keys)
        found = []
        for index, (block, present) in enumerate(blocks):
            row = stored[index * len(tags) : (index + 1) * len(tags)]
            data = BlockData(block, present, {tag: _bits(value) for tag, value in zip(tags, row, strict=True)})
            if spans:
                raw_span = stored[len(blocks) * len(tags) + index]
                data.span = decode_span(raw_span.value) if raw_span is not None else None
            found.append(data)
        return found

    async def read_dates(self, blocks: Sequence[BlockData]) -> None:
        """Fill in the times of blocks read without them."""
        missing = [block for block in blocks if block.micros is None]
        stored = await self._storage.read([dates_key(block.number) for block in missing])
        for block, value in zip(missing, stored, strict=True):
            block.micros = decode_dates(value.value) if value is not None else array("q")


def _bits(value: Versioned | None) -> int:
    return 0 if value is None else decode_bits(value.value)


async def prune(storage: KeyValueStore, anchor_seq: int) -> int:
    """Delete the index records of blocks whose every entry retention has cut; the records deleted."""
    raw = await storage.get(PRUNED_KEY)
    below = int(json.loads(raw)["below"]) if raw is not None else 0
    deleted = 0
    for block in range(below, (anchor_seq + 1) // BLOCK_ENTRIES):
        keys = await storage.keys_with_prefix(block_prefix(block))
        for start in range(0, len(keys), _DELETE_BATCH):
            await storage.commit([Delete(key) for key in keys[start : start + _DELETE_BATCH]])
        await storage.commit([Put(PRUNED_KEY, encode_json({"below": block + 1}))])
        deleted += len(keys)
    return deleted
