"""The audit log's query language (tantivy's QueryParser as Teaclave used it, §13.3)."""

from __future__ import annotations

import contextlib
import ipaddress
import time

import pytest

from cloister.services.management.audit import AuditEntry
from cloister.services.management.audit_query import (
    MAX_DEPTH,
    MAX_QUERY_CHARS,
    QuerySyntaxError,
    parse_query,
    parse_rfc3339,
    tokenize,
)

SECOND = 1_000_000
T2023 = parse_rfc3339("2023-01-01T00:00:00Z")
COMPAT = ipaddress.IPv6Address("::127.0.0.1").packed
MAPPED = ipaddress.IPv6Address("::ffff:10.0.0.7").packed
V6 = ipaddress.IPv6Address("2001:db8::1").packed


def entry(message: str, user: str = "", result: bool = True, at: int = T2023, ip: bytes = COMPAT) -> AuditEntry:
    return AuditEntry(at, ip, user, message, result)


def hits(query: str, entries: list[AuditEntry]) -> list[str]:
    parsed = parse_query(query)
    return [e.message for e in entries if parsed.matches(e)]


LETTERS = [entry("a"), entry("b"), entry("c"), entry("a b"), entry("a c"), entry("b c"), entry("a b c")]


def letters(query: str) -> set[str]:
    return set(hits(query, LETTERS))


# -- the functional test's expectations (§13.3) -------------------------------------------------

FUNCTIONAL = [
    entry("register_function", user="{ user: frontend_user, role: PlatformAdmin }", result=True),
    entry("authenticate to register_function: authentication failed", user="", result=False),
    entry("get_function", user='{ user: other_user, role: DataOwner("org1") }', result=True),
]


def test_functional_user_query():
    assert hits("user:frontend_user", FUNCTIONAL) == ["register_function"]


def test_functional_message_query_matches_both_register_entries():
    found = [e for e in FUNCTIONAL if parse_query("message:register_function").matches(e)]
    assert [e.message for e in found] == [
        "register_function",
        "authenticate to register_function: authentication failed",
    ]
    assert [(e.user != "", e.result) for e in found] == [(True, True), (False, False)]


def test_functional_authenticate_entries_are_anonymous_failures():
    found = [e for e in FUNCTIONAL if parse_query("message:authenticate").matches(e)]
    assert found and all(e.user == "" and e.result is False for e in found)


# -- terms, fields, tokenization ------------------------------------------------------------------


def test_tokenizer_splits_lowercases_and_keeps_positions_of_long_tokens():
    assert tokenize("Register_Function: OK!") == ["register", "function", "ok"]
    assert tokenize("a " + "x" * 40 + " b") == ["a", None, "b"]
    assert tokenize("a " + "x" * 39 + " b")[1] == "x" * 39


def test_bare_term_searches_message_only():
    entries = [entry("hello", user="world"), entry("world")]
    assert hits("world", entries) == ["world"]
    assert hits("user:world", entries) == ["hello"]
    assert hits("HELLO", entries) == ["hello"]


def test_term_is_a_phrase_of_its_tokens():
    entries = [entry("register function"), entry("function register"), entry("register the function")]
    assert hits("register_function", entries) == ["register function"]
    assert hits('"register function"', entries) == ["register function"]
    assert hits('message:"REGISTER-function"', entries) == ["register function"]


def test_phrase_across_a_dropped_long_token_keeps_the_gap():
    long = "y" * 45
    entries = [entry(f"a {long} b"), entry("a b"), entry("a z b")]
    assert hits(f'"a {long} b"', entries) == [f"a {long} b", "a z b"]


def test_term_without_alphanumerics_matches_nothing_alone_and_is_dropped_in_a_list():
    assert hits("message:!!!", LETTERS) == []
    assert hits(".", LETTERS) == []
    assert letters("+. +a") == {"a", "a b", "a c", "a b c"}


def test_result_field():
    entries = [entry("ok", result=True), entry("ko", result=False)]
    assert hits("result:true", entries) == ["ok"]
    assert hits("result:false", entries) == ["ko"]
    assert hits('result:"false"', entries) == ["ko"]


def test_ip_forms():
    entries = [entry("compat", ip=COMPAT), entry("mapped", ip=MAPPED), entry("v6", ip=V6)]
    assert hits("ip:127.0.0.1", entries) == ["compat"]
    assert hits("ip:10.0.0.7", entries) == ["mapped"]
    assert hits('ip:"::127.0.0.1"', entries) == ["compat"]
    assert hits('ip:"::ffff:10.0.0.7"', entries) == ["mapped"]
    assert hits('ip:"::ffff:127.0.0.1"', entries) == []
    assert hits('ip:"2001:db8::1"', entries) == ["v6"]
    assert hits("ip:2001:DB8:0::1", entries) == ["v6"]


def test_star_matches_everything_and_empty_query_too():
    assert len(hits("*", LETTERS)) == len(LETTERS)
    assert len(hits("", LETTERS)) == len(LETTERS)
    assert len(hits("  \t\n", LETTERS)) == len(LETTERS)


def test_boost_is_accepted_and_ignored():
    assert letters("a^2 OR b^0.5") == letters("a OR b")


# -- dates ------------------------------------------------------------------------------------------


def test_rfc3339_forms():
    assert parse_rfc3339("1970-01-01T00:00:00Z") == 0
    assert parse_rfc3339("1970-01-01T00:00:01.5Z") == 1_500_000
    assert parse_rfc3339("1970-01-01T00:00:00.123456789Z") == 123_456
    assert parse_rfc3339("1970-01-01T01:00:00+01:00") == 0
    assert parse_rfc3339("1969-12-31T23:00:00-01:00") == 0


DATED = [
    entry(name, at=T2023 + offset) for name, offset in (("before", -1), ("at", 0), ("frac", 400_000), ("after", SECOND))
]


def test_date_term_matches_the_whole_second():
    assert hits("date:2023-01-01T00:00:00Z", DATED) == ["at", "frac"]
    assert hits('date:"2023-01-01T01:00:00+01:00"', DATED) == ["at", "frac"]


def test_date_range_inclusive_and_exclusive():
    assert hits("date:[2023-01-01T00:00:00Z TO 2023-01-01T00:00:01Z]", DATED) == ["at", "frac", "after"]
    assert hits("date:{2023-01-01T00:00:00Z TO 2023-01-01T00:00:01Z]", DATED) == ["after"]
    assert hits("date:[2023-01-01T00:00:00Z TO 2023-01-01T00:00:01Z}", DATED) == ["at", "frac"]
    assert hits("date:{2022-12-31T23:59:59Z TO 2023-01-01T00:00:01Z}", DATED) == ["at", "frac"]


def test_date_range_open_ended():
    assert hits("date:[2023-01-01T00:00:00Z TO *]", DATED) == ["at", "frac", "after"]
    assert hits("date:[* TO 2023-01-01T00:00:00Z}", DATED) == ["before"]
    assert hits("date:{* TO *}", DATED) == ["before", "at", "frac", "after"]
    assert hits("date:>2023-01-01T00:00:00Z", DATED) == ["after"]
    assert hits("date: >=2023-01-01T00:00:00Z", DATED) == ["at", "frac", "after"]
    assert hits("date:<2023-01-01T00:00:00Z", DATED) == ["before"]
    assert hits("date:<= 2023-01-01T00:00:00Z", DATED) == ["before", "at", "frac"]


def test_date_range_combines_with_other_clauses():
    assert hits("+date:[2023-01-01T00:00:00Z TO *] -frac", DATED) == ["at", "after"]


# -- boolean structure ----------------------------------------------------------------------------


def test_adjacent_clauses_default_to_or():
    assert letters("a b") == letters("a OR b") == {"a", "b", "a b", "a c", "b c", "a b c"}


def test_and_or_not():
    assert letters("a AND b") == {"a b", "a b c"}
    assert letters("a AND NOT b") == {"a", "a c"}
    assert letters("NOT a AND b") == {"b", "b c"}
    assert letters("a AND b AND c") == {"a b c"}


def test_and_binds_tighter_than_or():
    assert letters("a OR b AND c") == {"a", "a b", "a c", "b c", "a b c"}
    assert letters("a AND b OR c") == {"c", "a b", "a c", "b c", "a b c"}


def test_parentheses_override_precedence():
    assert letters("(a OR b) AND c") == {"a c", "b c", "a b c"}
    assert letters("a AND (b OR c)") == {"a b", "a c", "a b c"}
    assert letters("((a))") == letters("a")
    assert letters("NOT (a OR b) AND c") == {"c"}


def test_must_and_must_not():
    assert letters("+a") == letters("a")
    assert letters("+a +b") == {"a b", "a b c"}
    assert letters("+a -b") == {"a", "a c"}
    assert letters("+a b") == letters("a")  # a should clause is optional once there is a must
    assert letters("a -b") == {"a", "a c"}
    assert letters("-a b c") == {"b", "c", "b c"}
    assert letters("+(a b) -c") == {"a", "b", "a b"}


def test_not_composes_like_tantivy():
    assert letters("NOT NOT a") == letters("a")
    assert letters("b -NOT a") == {"a", "a b", "a c", "a b c"}
    assert letters("a OR -b") == letters("a")  # a group of only exclusions matches nothing


@pytest.mark.parametrize("query", ["-a", "NOT a", "-a -b", "NOT (a OR b)", "(-a) OR (-b)", "+(-a)", "-*"])
def test_only_excluding_clauses_is_an_error(query: str):
    with pytest.raises(QuerySyntaxError, match="only excluding"):
        parse_query(query)


# -- syntax errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "fragment", "offset"),
    [
        ('"abc', "unbalanced '\"'", 0),
        ('a "b c', "unbalanced '\"'", 2),
        ("(a", "unbalanced '('", 0),
        ("a (b OR (c)", "unbalanced '('", 2),
        ("a)", "unbalanced ')'", 1),
        ("foo:bar", "unknown field 'foo'", 0),
        ("http://x", "unknown field 'http'", 0),
        ("date:2023-13-01T00:00:00Z", "not a valid date-time", 0),
        ("date:yesterday", "not an RFC 3339 date-time", 0),
        ("date:[2023-01-01 TO *]", "not an RFC 3339 date-time", 0),
        ("date:[2023-01-01T00:00:00Z TO]", "upper bound", 27),
        ("date:[2023-01-01T00:00:00Z 2024-01-01T00:00:00Z]", "'TO'", 27),
        ("date:[* TO *", "unclosed range", 0),
        ("message:[a TO b]", "only supported on the date field", 0),
        ("[a TO b]", "needs a field", 0),
        ("ip:localhost", "not an IP address", 0),
        ('ip:"fe80::1%eth0"', "not an IP address", 0),
        ("result:yes", "true or false", 0),
        ("result:True", "true or false", 0),
        ("a OR", "ends where a clause is expected", 4),
        ("AND a", "AND needs a clause", 0),
        ("a AND OR b", "OR needs a clause", 6),
        ("NOT", "ends where a clause", 3),
        ("()", "expected a clause", 1),
        ("--a", "expected a clause", 1),
        ("a - b", "'-' must be directly followed", 2),
        ("user: x", "value right after 'user:'", 5),
        ("user:", "expected a value", 5),
        ('""', "empty phrase", 0),
        ('"a b"~2', "slop", 5),
        ("a ^", "boost factor", 2),
        ("a:b:c", "unknown field", 0),
    ],
)
def test_syntax_errors_say_what_and_where(query: str, fragment: str, offset: int):
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert fragment in str(caught.value)
    assert caught.value.offset == offset
    assert isinstance(caught.value, ValueError)


def test_error_messages_do_not_echo_long_input():
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query("x" * 1000 + ":y")
    assert len(str(caught.value)) < 200


# -- hostile input ---------------------------------------------------------------------------------


def test_too_long_query_is_rejected():
    parse_query("a" * MAX_QUERY_CHARS)
    with pytest.raises(QuerySyntaxError, match="longer than"):
        parse_query("a" * (MAX_QUERY_CHARS + 1))


def test_nesting_is_bounded():
    at_limit = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert letters(at_limit) == letters("a")
    with pytest.raises(QuerySyntaxError, match="nested deeper"):
        parse_query("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(QuerySyntaxError, match="nested deeper"):
        parse_query("(" * 2000)
    with pytest.raises(QuerySyntaxError, match="nested deeper"):
        parse_query("(a AND " * 500)


def test_wide_and_repetitive_queries_stay_fast():
    started = time.monotonic()
    queries = [
        "NOT " * 1000 + "a",
        " OR ".join(["a"] * 800),
        " AND ".join(["+a"] * 500),
        '"' + "a " * 2000 + '"',
        "date:[2023-01-01T00:00:00Z TO *] " * 100,
    ]
    big = entry("a " * 5000)
    for query in queries:
        parsed = parse_query(query)
        for item in [*LETTERS, big]:
            parsed.matches(item)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("query", [*'"():+^[{}]\\`~!', "date:", "ip:", "*:", "a:", "NOT(", "a AND"])
def test_lone_special_characters_raise_or_parse_but_never_crash(query: str):
    with contextlib.suppress(QuerySyntaxError):
        parse_query(query).matches(LETTERS[0])
