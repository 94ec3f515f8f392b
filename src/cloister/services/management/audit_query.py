"""The audit log's query language: tantivy 0.19's ``QueryParser`` as Teaclave used it (§13.3).

``parse_query`` turns a query into a small AST; ``Query.matches(entry)`` evaluates it on one entry.
Pure: no I/O. Precedence, tightest first: ``NOT``/``+``/``-`` (one clause), then ``AND`` and plain
juxtaposition (one clause list with tantivy's must/should/must-not rules), then ``OR``.
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Protocol

MAX_QUERY_CHARS = 4096
MAX_DEPTH = 32
FIELDS = ("date", "ip", "message", "result", "user")
_TEXT_FIELDS = ("message", "user")
_MAX_TOKEN_BYTES = 40  # tantivy's RemoveLongFilter drops tokens this long or longer
_TOKEN = re.compile(r"[^\W_]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = 1_000_000


class QuerySyntaxError(ValueError):
    """The query does not parse; ``offset`` is where (0-based), when known."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at offset {offset})")
        self.offset = offset


class AuditRecord(Protocol):
    @property
    def microsecond(self) -> int: ...
    @property
    def ip(self) -> bytes: ...
    @property
    def user(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def result(self) -> bool: ...


def tokenize(text: str) -> list[str | None]:
    """Tantivy's default analyzer: split on non-alphanumerics, drop long tokens, lowercase.

    A dropped token leaves ``None`` so later tokens keep their positions, as in tantivy.
    """
    if text.isascii():  # lowercasing first is the same there, and much faster
        return [token if len(token) < _MAX_TOKEN_BYTES else None for token in _TOKEN.findall(text.lower())]
    tokens: list[str | None] = []
    for match in _TOKEN.finditer(text):
        raw = match.group()
        if len(raw.encode("utf-8", "surrogatepass")) >= _MAX_TOKEN_BYTES:
            tokens.append(None)
        else:  # tantivy lowercases char by char (no final-sigma rule)
            tokens.append(raw.lower() if raw.isascii() else "".join(map(str.lower, raw)))
    return tokens


class _Document:
    """One entry, with each text field tokenized at most once per evaluation."""

    def __init__(self, entry: AuditRecord) -> None:
        self.entry = entry
        self._tokens: dict[str, list[str | None]] = {}

    def tokens(self, field: str) -> list[str | None]:
        if field not in self._tokens:
            self._tokens[field] = tokenize(getattr(self.entry, field))
        return self._tokens[field]


class Query(ABC):
    """A parsed query; immutable, reusable across entries."""

    def matches(self, entry: AuditRecord) -> bool:
        """Whether ``entry`` (``.microsecond``, ``.ip``, ``.user``, ``.message``, ``.result``) matches."""
        return self._match(_Document(entry))

    @abstractmethod
    def _match(self, doc: _Document) -> bool: ...


class Occur(Enum):
    MUST = "+"
    SHOULD = ""
    MUST_NOT = "-"


@dataclass(frozen=True)
class MatchAll(Query):
    def _match(self, doc: _Document) -> bool:
        return True


@dataclass(frozen=True)
class MatchNothing(Query):
    def _match(self, doc: _Document) -> bool:
        return False


@dataclass(frozen=True)
class _NoTerms(Query):
    """A text term without tokens; tantivy drops it from clause lists (and matches nothing alone)."""

    def _match(self, doc: _Document) -> bool:
        return False


@dataclass(frozen=True)
class TextQuery(Query):
    """Tokens that must appear at these relative positions (a term, or a phrase)."""

    field: str
    terms: tuple[tuple[int, str], ...]

    def _match(self, doc: _Document) -> bool:
        tokens = doc.tokens(self.field)
        if len(self.terms) == 1:
            return self.terms[0][1] in tokens
        span = self.terms[-1][0]
        first = self.terms[0][1]
        return any(
            tokens[start] == first and all(tokens[start + at] == word for at, word in self.terms[1:])
            for start in range(len(tokens) - span)
        )


@dataclass(frozen=True)
class ResultQuery(Query):
    value: bool

    def _match(self, doc: _Document) -> bool:
        return bool(doc.entry.result) is self.value


@dataclass(frozen=True)
class IPQuery(Query):
    addresses: frozenset[bytes]

    def _match(self, doc: _Document) -> bool:
        return bytes(doc.entry.ip) in self.addresses


@dataclass(frozen=True)
class DateQuery(Query):
    """Whole seconds since the epoch; tantivy 0.19 indexes dates truncated to seconds."""

    lower: int | None
    lower_inclusive: bool
    upper: int | None
    upper_inclusive: bool

    def _match(self, doc: _Document) -> bool:
        return self.contains(doc.entry.microsecond)

    def contains(self, micros: int) -> bool:
        """Whether an entry stamped ``micros`` (µs since the epoch) is in the range."""
        at = _truncate_to_seconds(micros)
        if self.lower is not None and (at < self.lower or (at == self.lower and not self.lower_inclusive)):
            return False
        return self.upper is None or at < self.upper or (at == self.upper and self.upper_inclusive)

    def overlaps(self, earliest: int, latest: int) -> bool:
        """Whether any time from ``earliest`` to ``latest`` (µs) can be in the range."""
        first, last = _truncate_to_seconds(earliest), _truncate_to_seconds(latest)
        if self.upper is not None and (first > self.upper or (first == self.upper and not self.upper_inclusive)):
            return False
        return self.lower is None or last > self.lower or (last == self.lower and self.lower_inclusive)


@dataclass(frozen=True)
class BooleanQuery(Query):
    """Tantivy's boolean rule: every must, no must-not, and one should unless there is a must."""

    clauses: tuple[tuple[Occur, Query], ...]

    def _match(self, doc: _Document) -> bool:
        has_must = any_should = False
        for occur, query in self.clauses:
            if occur is Occur.MUST_NOT:
                if query._match(doc):
                    return False
            elif occur is Occur.MUST:
                has_must = True
                if not query._match(doc):
                    return False
            elif not any_should:
                any_should = query._match(doc)
        return has_must or any_should


def _truncate_to_seconds(micros: int) -> int:
    return micros // _MICROS if micros >= 0 else -(-micros // _MICROS)


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_rfc3339(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 date-time; digits past µs are dropped."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:64]!r} is not an RFC 3339 date-time (e.g. 2023-01-01T00:00:00Z)")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "")[:6].ljust(6, "0")
    offset = timedelta(0)
    if match.group(8) is None:
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError(f"{text[:64]!r} has an invalid UTC offset")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if match.group(9) == "-" else 1)
    try:
        moment = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=timezone(offset))
    except ValueError as exc:
        raise ValueError(f"{text[:64]!r} is not a valid date-time: {exc}") from None
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _ip_addresses(text: str) -> frozenset[bytes]:
    """An IPv4 address matches both 16-byte forms the frontend may have stored (::a.b.c.d, ::ffff:a.b.c.d)."""
    if "%" in text:  # Rust's parser has no zone ids
        raise ValueError(f"{text[:64]!r} is not an IP address")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text[:64]!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv4Address):
        return frozenset({bytes(12) + address.packed, bytes(10) + b"\xff\xff" + address.packed})
    return frozenset({address.packed})


def _all_negative(query: Query) -> bool:
    """Tantivy rejects queries that only exclude (an empty text term counts as excluding nothing)."""
    if isinstance(query, BooleanQuery):
        return all(occur is Occur.MUST_NOT or _all_negative(child) for occur, child in query.clauses)
    return isinstance(query, _NoTerms)


def _trim(query: Query) -> Query | None:
    """Drop empty text terms from clause lists, as tantivy's ``trim_ast`` does."""
    if isinstance(query, _NoTerms):
        return None
    if isinstance(query, BooleanQuery):
        kept = tuple((occur, t) for occur, child in query.clauses if (t := _trim(child)) is not None)
        return BooleanQuery(kept) if kept else None
    return query


_FIELD_NAME = re.compile(r'([^\s+^`:{}"\[\]()!\\*\-][^\s+^`:{}"\[\]()!\\*]*):')
_WORD = re.compile(r'[^\s\-^`:{}"\[\]()][^\s:^{}"\[\]()]*')
_NEGATIVE_NUMBER = re.compile(r"-[0-9]+(?:\.[0-9]+)?")
_ADDRESS = re.compile(r'[^\s()"\[\]{}^]+')  # unquoted ip and date values contain ':'
_BOUND = re.compile(r"[^\s\]}]+")
_BOOST = re.compile(r"\^[0-9]+(?:\.[0-9]+)?")
_SLOP = re.compile(r"~[0-9]+")
_KEYWORDS = frozenset({"AND", "OR", "NOT"})
_CLAUSE_START = frozenset({"(", "*", "+", "-", "NOT", "TERM", "RANGE"})


@dataclass(frozen=True)
class _Token:
    kind: str  # one of ( ) * + - ^ AND OR NOT TERM RANGE EOF
    offset: int
    field: str | None = None
    text: str = ""
    lower: str | None = None  # RANGE bounds; None is unbounded
    upper: str | None = None
    lower_inclusive: bool = False
    upper_inclusive: bool = False


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        pos = _skip_space(text, pos)
        if pos == len(text):
            tokens.append(_Token("EOF", pos))
            return tokens
        char = text[pos]
        if char in "()*":
            tokens.append(_Token(char, pos))
            pos += 1
        elif char in "+-":
            if pos + 1 == len(text) or text[pos + 1].isspace():
                raise QuerySyntaxError(f"{char!r} must be directly followed by a clause", pos)
            tokens.append(_Token(char, pos))
            pos += 1
        elif char == "^":
            if (boost := _BOOST.match(text, pos)) is None:
                raise QuerySyntaxError("'^' must be followed by a boost factor such as ^2", pos)
            tokens.append(_Token("^", pos))
            pos = boost.end()
        elif char == '"':
            token, pos = _phrase(text, pos, None, pos)
            tokens.append(token)
        elif char in "[{<>":
            raise QuerySyntaxError("a range needs a field, as in date:[... TO ...]", pos)
        elif (name := _FIELD_NAME.match(text, pos)) is not None:
            token, pos = _field_value(text, name)
            tokens.append(token)
        elif (word := _WORD.match(text, pos)) is not None:
            kind = word.group() if word.group() in _KEYWORDS else "TERM"
            tokens.append(_Token(kind, pos, text=word.group()))
            pos = word.end()
        else:
            raise QuerySyntaxError(f"unexpected {char!r}", pos)


def _phrase(text: str, start: int, field: str | None, offset: int) -> tuple[_Token, int]:
    end = text.find('"', start + 1)
    if end < 0:
        raise QuerySyntaxError("unbalanced '\"': the phrase is never closed", start)
    if end == start + 1:
        raise QuerySyntaxError('empty phrase ""', start)
    after = end + 1
    if (slop := _SLOP.match(text, after)) is not None:
        if slop.group().strip("~0"):
            raise QuerySyntaxError("phrase slop ('~N') is not supported", after)
        after = slop.end()
    return _Token("TERM", offset, field=field, text=text[start + 1 : end]), after


def _field_value(text: str, name: re.Match[str]) -> tuple[_Token, int]:
    field, start, pos = name.group(1), name.start(), name.end()
    if field not in FIELDS:
        raise QuerySyntaxError(f"unknown field {field[:64]!r}; the fields are {', '.join(FIELDS)}", start)
    if pos < len(text) and text[pos].isspace():  # tantivy allows "date: >x" but not "user: x"
        pos = _skip_space(text, pos)
        if pos == len(text) or text[pos] not in "[{<>":
            raise QuerySyntaxError(f"expected a value right after '{field}:'", name.end())
    char = text[pos] if pos < len(text) else ""
    if char == '"':
        return _phrase(text, pos, field, start)
    if char and char in "[{":
        return _bracket_range(text, pos, field, start)
    if char and char in "<>":
        operator = text[pos : pos + 2] if text.startswith("=", pos + 1) else char
        value = _ADDRESS.match(text, _skip_space(text, pos + len(operator)))
        if value is None:
            raise QuerySyntaxError(f"expected a value after {operator!r}", pos)
        bound, inclusive = value.group(), operator.endswith("=")
        if char == ">":
            return _Token("RANGE", start, field=field, lower=bound, lower_inclusive=inclusive), value.end()
        return _Token("RANGE", start, field=field, upper=bound, upper_inclusive=inclusive), value.end()
    if field in ("ip", "date"):
        value = _ADDRESS.match(text, pos)
    else:
        value = _NEGATIVE_NUMBER.match(text, pos) or _WORD.match(text, pos)
    if value is None:
        raise QuerySyntaxError(f"expected a value after '{field}:'", pos)
    return _Token("TERM", start, field=field, text=value.group()), value.end()


def _bracket_range(text: str, pos: int, field: str, start: int) -> tuple[_Token, int]:
    """``[a TO b]`` (inclusive), ``{a TO b}`` (exclusive), mixed brackets, ``*`` for an open end."""
    lower_inclusive = text[pos] == "["
    lower = _BOUND.match(text, _skip_space(text, pos + 1))
    if lower is None:
        raise QuerySyntaxError("expected a lower bound after the range's opening bracket", pos)
    pos = _skip_space(text, lower.end())
    after_to = text[pos + 2 : pos + 3]
    if not text.startswith("TO", pos) or not (after_to == "" or after_to.isspace() or after_to in "]}"):
        raise QuerySyntaxError("expected 'TO' between the bounds of a range", pos)
    upper = _BOUND.match(text, _skip_space(text, pos + 2))
    if upper is None:
        raise QuerySyntaxError("expected an upper bound after 'TO'", pos)
    pos = _skip_space(text, upper.end())
    if pos == len(text) or text[pos] not in "]}":
        raise QuerySyntaxError("unclosed range: expected ']' or '}'", start)
    token = _Token(
        "RANGE",
        start,
        field=field,
        lower=None if lower.group() == "*" else lower.group(),
        upper=None if upper.group() == "*" else upper.group(),
        lower_inclusive=lower_inclusive,
        upper_inclusive=text[pos] == "]",
    )
    return token, pos + 1


def _term_query(token: _Token) -> Query:
    field = token.field or "message"
    if field in _TEXT_FIELDS:
        words = [(at, word) for at, word in enumerate(tokenize(token.text)) if word is not None]
        if not words:
            return _NoTerms()
        first = words[0][0]
        return TextQuery(field, tuple((at - first, word) for at, word in words))
    try:
        if field == "result":
            if token.text not in ("true", "false"):  # Rust's bool::from_str
                raise ValueError(f"result must be true or false, not {token.text[:64]!r}")
            return ResultQuery(token.text == "true")
        if field == "ip":
            return IPQuery(_ip_addresses(token.text))
        at = _truncate_to_seconds(parse_rfc3339(token.text))
        return DateQuery(at, True, at, True)
    except ValueError as exc:
        raise QuerySyntaxError(str(exc), token.offset) from None


def _range_query(token: _Token) -> Query:
    if token.field != "date":
        raise QuerySyntaxError(f"range queries are only supported on the date field, not {token.field}", token.offset)
    try:
        lower = None if token.lower is None else _truncate_to_seconds(parse_rfc3339(token.lower))
        upper = None if token.upper is None else _truncate_to_seconds(parse_rfc3339(token.upper))
    except ValueError as exc:
        raise QuerySyntaxError(str(exc), token.offset) from None
    return DateQuery(lower, token.lower_inclusive, upper, token.upper_inclusive)


def _expected_clause(token: _Token) -> str:
    if token.kind == "EOF":
        return "the query ends where a clause is expected"
    if token.kind in ("AND", "OR"):
        return f"{token.kind} needs a clause on each side"
    return f"expected a clause, found {token.text or token.kind!r}"


class _Parser:
    """Recursive descent over the tokens; recursion only at '(' and bounded by ``MAX_DEPTH``."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._at = 0

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _next(self) -> _Token:
        token = self._tokens[self._at]
        self._at = min(self._at + 1, len(self._tokens) - 1)
        return token

    def parse(self) -> Query:
        query = self._disjunction(0)
        token = self._peek()
        if token.kind == ")":
            raise QuerySyntaxError("unbalanced ')': no matching '('", token.offset)
        if token.kind != "EOF":
            raise QuerySyntaxError(_expected_clause(token), token.offset)
        return query

    def _disjunction(self, depth: int) -> Query:
        groups = [self._conjunction(depth)]
        while self._peek().kind == "OR":
            self._next()
            groups.append(self._conjunction(depth))
        return groups[0] if len(groups) == 1 else BooleanQuery(tuple((Occur.SHOULD, g) for g in groups))

    def _conjunction(self, depth: int) -> Query:
        """Clauses joined by AND or by nothing: AND makes both neighbours must, as in tantivy."""
        clauses = [self._clause(depth)]
        joined: list[bool] = []
        while (kind := self._peek().kind) == "AND" or kind in _CLAUSE_START:
            if kind == "AND":
                self._next()
            joined.append(kind == "AND")
            clauses.append(self._clause(depth))
        resolved: list[tuple[Occur, Query]] = []
        for index, (prefix, negated, query) in enumerate(clauses):
            by_and = (index > 0 and joined[index - 1]) or (index < len(joined) and joined[index])
            occur = prefix or (Occur.MUST if by_and else Occur.SHOULD)
            if negated:  # tantivy's compose_occur: NOT of must-not is must
                occur = Occur.MUST if occur is Occur.MUST_NOT else Occur.MUST_NOT
            resolved.append((occur, query))
        if len(resolved) == 1 and resolved[0][0] is not Occur.MUST_NOT:
            return resolved[0][1]
        return BooleanQuery(tuple(resolved))

    def _clause(self, depth: int) -> tuple[Occur | None, bool, Query]:
        token = self._next()
        prefix = None
        if token.kind in ("+", "-"):
            prefix = Occur.MUST if token.kind == "+" else Occur.MUST_NOT
            token = self._next()
        negated = False
        while token.kind == "NOT":
            negated = not negated
            token = self._next()
        query: Query
        if token.kind == "(":
            if depth >= MAX_DEPTH:
                raise QuerySyntaxError(f"parentheses nested deeper than {MAX_DEPTH}", token.offset)
            query = self._disjunction(depth + 1)
            if self._next().kind != ")":
                raise QuerySyntaxError("unbalanced '(': no matching ')'", token.offset)
        elif token.kind == "*":
            query = MatchAll()
        elif token.kind == "TERM":
            query = _term_query(token)
        elif token.kind == "RANGE":
            query = _range_query(token)
        else:
            raise QuerySyntaxError(_expected_clause(token), token.offset)
        if self._peek().kind == "^":  # a boost changes scores, never matches
            self._next()
        return prefix, negated, query


def parse_query(text: str) -> Query:
    """Parse an audit-log query; raises ``QuerySyntaxError`` saying what is wrong and where.

    An empty (or all-whitespace) query matches every entry.
    """
    if len(text) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(f"query longer than {MAX_QUERY_CHARS} characters")
    if not text.strip():
        return MatchAll()
    root = _Parser(_lex(text)).parse()
    if isinstance(root, _NoTerms):
        return MatchNothing()
    if _all_negative(root):
        raise QuerySyntaxError("invalid query: only excluding terms given")
    return _trim(root) or MatchNothing()
