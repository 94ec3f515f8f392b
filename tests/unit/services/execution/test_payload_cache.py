"""The execution service's payload cache: by digest, least recently used out, pinned while advertised."""

from __future__ import annotations

import asyncio

from cloister.model.functions import EMPTY_PAYLOAD_SHA256, payload_sha256
from cloister.services.execution.payloads import ADVERTISED, PayloadCache


def add(cache: PayloadCache, payload: bytes) -> str:
    digest = payload_sha256(payload)
    assert asyncio.run(cache.add(digest, payload))
    return digest


def test_least_recently_used_payloads_go_first() -> None:
    cache = PayloadCache(30)
    a, b = add(cache, b"a" * 10), add(cache, b"b" * 10)
    assert cache.get(a) == b"a" * 10  # a is now the most recent
    c, d = add(cache, b"c" * 10), add(cache, b"d" * 10)
    assert cache.get(b) is None and cache.size == 30
    assert [cache.get(x) is not None for x in (a, c, d)] == [True, True, True]


def test_a_payload_is_kept_only_under_its_own_digest() -> None:
    cache = PayloadCache(100)
    assert not asyncio.run(cache.add(payload_sha256(b"good"), b"evil"))
    assert cache.size == 0 and cache.get(payload_sha256(b"good")) is None


def test_advertised_payloads_outlive_the_budget_until_their_poll_is_answered() -> None:
    cache = PayloadCache(20)
    a = add(cache, b"a" * 10)
    with cache.advertised() as listed:
        assert listed == [a]
        add(cache, b"b" * 10)
        add(cache, b"c" * 10)  # over budget: b goes, a is pinned
        assert cache.get(a) == b"a" * 10
    assert cache.size <= 20


def test_too_large_or_empty_payloads_are_not_kept_and_builtins_need_none() -> None:
    cache = PayloadCache(5)
    add(cache, b"x" * 6)
    assert cache.size == 0
    assert cache.get(EMPTY_PAYLOAD_SHA256) == b""
    assert PayloadCache(0).get(payload_sha256(b"x")) is None


def test_a_poll_lists_the_most_recent_digests_only() -> None:
    cache = PayloadCache(1 << 20)
    digests = [add(cache, str(n).encode()) for n in range(ADVERTISED + 10)]
    with cache.advertised() as listed:
        assert listed == digests[::-1][:ADVERTISED]
