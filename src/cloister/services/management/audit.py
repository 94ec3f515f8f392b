"""Audit log: store entries in a hash chain and search them (reference §13).

Teaclave kept a tantivy index; here each entry is one record under ``audit-<sequence>``, chained
to the one before (``cloister.model.audit``) so ``cloister audit verify`` detects tampering,
and a query is a list of clauses that must all match: ``field:term`` (user, message, result,
ip) or a bare term (message). Text is tokenized as tantivy's default tokenizer does and a term
matches when its tokens appear contiguously in the field. A later change brings the full
query language; until then a query reads every entry, newest first, until ``limit`` match.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from cloister.errors import FailedOperationError
from cloister.model.audit import AuditEntry, ChainedEntry, ChainHead
from cloister.model.roles import Role
from cloister.services.management import permissions
from cloister.services.management.records import MAX_READ_KEYS
from cloister.storage.client import StorageClient
from cloister.storage.ops import Put

_PREFIX = b"audit"
_IP_BYTES = 16
_MAX_TOKEN_BYTES = 40  # tantivy's default tokenizer drops longer tokens
_TOKEN = re.compile(r"[^\W_]+")
_MICROS_PER_SECOND = 1_000_000


def _error(reason: str) -> FailedOperationError:
    return FailedOperationError(f"audit log error, reason: {reason}")


def tokenize(text: str) -> list[str]:
    """Split on non-alphanumeric characters and lowercase, dropping over-long tokens."""
    return [t for t in (m.lower() for m in _TOKEN.findall(text)) if len(t.encode()) < _MAX_TOKEN_BYTES]


def _contains(tokens: list[str], phrase: list[str]) -> bool:
    if not phrase:
        return False
    width = len(phrase)
    return any(tokens[i : i + width] == phrase for i in range(len(tokens) - width + 1))


Matcher = Callable[[AuditEntry], bool]


def _text_clause(field: str, term: str) -> Matcher:
    phrase = tokenize(term)
    return lambda entry: _contains(tokenize(getattr(entry, field)), phrase)


def _result_clause(term: str) -> Matcher:
    if term.lower() not in ("true", "false"):
        raise _error(f"failed to query logs: result must be true or false, not {term[:64]!r}")
    wanted = term.lower() == "true"
    return lambda entry: entry.result is wanted


def _ip_clause(term: str) -> Matcher:
    try:
        address = ipaddress.ip_address(term)
    except ValueError:
        raise _error(f"failed to query logs: {term[:64]!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv4Address):
        # The frontend stores IPv4 as IPv4-compatible (::a.b.c.d); accept the mapped form too.
        wanted = {bytes(12) + address.packed, bytes(10) + b"\xff\xff" + address.packed}
    else:
        wanted = {address.packed}
    return lambda entry: entry.ip in wanted


_CLAUSE = re.compile(r'(?:([^\s:"]+):)?("[^"]*"|[^\s"]+)')


def parse_query(query: str) -> list[Matcher]:
    """The clauses of ``query``; raises the audit error for an unknown field or a bad term."""
    matchers: list[Matcher] = []
    position = 0
    while True:
        while position < len(query) and query[position].isspace():
            position += 1
        if position == len(query):
            return matchers
        match = _CLAUSE.match(query, position)
        if match is None:
            raise _error("failed to query logs: unbalanced quote")
        field, term = match.group(1) or "message", match.group(2)
        position = match.end()
        if term.startswith('"'):
            term = term[1:-1]
        elif match.group(1) is None and ":" in term:  # "user:" with no term, or ":x"
            raise _error(f"failed to query logs: cannot parse {term[:64]!r}")
        if field in ("user", "message"):
            matchers.append(_text_clause(field, term))
        elif field == "result":
            matchers.append(_result_clause(term))
        elif field == "ip":
            matchers.append(_ip_clause(term))
        else:
            raise _error(f"failed to query logs: unknown field {field[:64]}")


HEAD_KEY = b"chain-audit-head"


def entry_key(seq: int) -> bytes:
    return b"audit-%020d" % seq


def _dump(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _newest_first(entries: list[tuple[int, AuditEntry]]) -> list[AuditEntry]:
    """Newer seconds first; within one second in the order written.

    Teaclave's index sorts by a date of one-second precision, and its tests expect two entries
    of the same second to come back oldest first (§13.3).
    """
    ordered = sorted(entries, key=lambda pair: (-(pair[1].microsecond // _MICROS_PER_SECOND), pair[0]))
    return [entry for _, entry in ordered]


class AuditLog:
    def __init__(self, storage: StorageClient) -> None:
        self._storage = storage
        self._lock = asyncio.Lock()
        self._head: ChainHead | None = None

    async def save(self, entries: Sequence[AuditEntry]) -> None:
        """Append a batch to the chain in one commit; one malformed entry rejects the whole batch."""
        for entry in entries:
            if len(entry.ip) != _IP_BYTES:
                raise _error("failed to transform entries: ip must be 16 bytes")
        if not entries:
            return
        async with self._lock:
            if self._head is None:
                raw = await self._storage.get(HEAD_KEY)
                self._head = ChainHead.from_json(json.loads(raw)) if raw else ChainHead()
            chained, head = self._head.extend(entries)
            ops = [Put(entry_key(c.seq), _dump(c.to_json())) for c in chained]
            await self._storage.commit([*ops, Put(HEAD_KEY, _dump(head.to_json()))])
            self._head = head

    async def query(self, role: Role, query: str, limit: int) -> list[AuditEntry]:
        """At most ``limit`` entries matching every clause of ``query``, newest first."""
        permissions.check_query_audit_logs(role)
        if limit <= 0:
            raise _error("limit must be positive")
        matchers = parse_query(query)
        keys = await self._storage.keys_with_prefix(_PREFIX)
        found: list[tuple[int, AuditEntry]] = []
        for start in range(0, len(keys), MAX_READ_KEYS):
            for value in await self._storage.read(keys[start : start + MAX_READ_KEYS]):
                if value is None:
                    continue
                record = ChainedEntry.from_json(json.loads(value.value))
                if all(matcher(record.entry) for matcher in matchers):
                    found.append((record.seq, record.entry))
        return _newest_first(found)[:limit]
