"""Function payloads by SHA-256, kept between tasks so a function's payload crosses the wire once.

The execution service tells the scheduler which digests it holds (PullTaskWait's
``cached_payloads``), and the scheduler then hands tasks of those functions out without their
payload. A digest advertised by a poll still waiting for its answer is pinned: it cannot be
evicted before that answer, which may count on it, arrives.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator

from cloister.model.functions import EMPTY_PAYLOAD_SHA256, payload_sha256

ADVERTISED = 64
"""Most recently used digests a poll lists."""
_HASH_IN_THREAD = 1024 * 1024
"""Payloads at least this large are hashed off the event loop."""


class PayloadCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._bytes = 0
        self._pins: collections.Counter[str] = collections.Counter()

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._bytes

    @contextlib.contextmanager
    def advertised(self) -> Iterator[list[str]]:
        """The digests to list in a poll, pinned until the poll's answer has been dealt with."""
        digests = list(reversed(self._entries))[:ADVERTISED]
        self._pins.update(digests)
        try:
            yield digests
        finally:
            self._pins.subtract(digests)
            self._pins += collections.Counter()  # drops the zero counts
            self._evict()

    def get(self, digest: str) -> bytes | None:
        """The payload named ``digest``, if held (empty for a built-in's)."""
        if digest == EMPTY_PAYLOAD_SHA256:
            return b""
        payload = self._entries.get(digest)
        if payload is not None:
            self._entries.move_to_end(digest)
        return payload

    async def add(self, digest: str, payload: bytes) -> bool:
        """Keep ``payload`` under ``digest``; False (and nothing kept) if that is not its digest."""
        if len(payload) >= _HASH_IN_THREAD:
            actual = await asyncio.to_thread(payload_sha256, payload)
        else:
            actual = payload_sha256(payload)
        if actual != digest:
            return False
        if digest not in self._entries and 0 < len(payload) <= self._max_bytes:
            self._entries[digest] = payload
            self._bytes += len(payload)
            self._evict()
        return True

    def _evict(self) -> None:
        """Drop the least recently used unpinned payloads until the budget holds (or only pinned
        ones are left: they go once their polls are answered)."""
        for digest in list(self._entries):
            if self._bytes <= self._max_bytes:
                return
            if self._pins[digest] == 0:
                self._bytes -= len(self._entries.pop(digest))
