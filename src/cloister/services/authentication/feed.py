"""Which users changed, told to every frontend before the change is answered (``CredentialFeed``).

A frontend remembers what ``UserAuthenticate`` answered about a token, so it need not ask on
every call. Any change to a user (a new password, role or generation, a deletion) ends that
user's tokens at once (issue 9), so before a change is answered to whoever made it, every
frontend must have forgotten what it remembers about that user. Each frontend holds one stream:
changes are numbered, the frontend acknowledges each number once applied, and heartbeats tell
it for how long it may trust its memory without hearing again. A change waits for every
frontend's acknowledgement, or for that long after it was sent to a frontend that stays silent:
by then that frontend no longer trusts what it remembers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from cloister._proto import cloister_pb2 as cpb

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5
TRUST_SECONDS = 2.0
"""How long a frontend may use what it remembers after its last message from here."""
_SLACK = 0.1
"""Beyond ``TRUST_SECONDS``: the frontend's clock may run a little slower than ours."""
_MAX_IDS_PER_MESSAGE = 1000


class _Subscriber:
    def __init__(self) -> None:
        self.pending: list[str] = []
        self.wake = asyncio.Event()
        self.acked = 0
        self.acked_changed = asyncio.Event()


class CredentialFeed:
    """Numbers changes to users and tells each subscribed frontend; :meth:`changed` returns once they know."""

    def __init__(self) -> None:
        self._seq = 0
        self._subscribers: set[_Subscriber] = set()
        self._closed = asyncio.Event()

    async def changed(self, user_ids: list[str]) -> None:
        """Tell every frontend that ``user_ids`` changed; return once each has acknowledged it, or has
        been silent for as long as it may trust its memory (at most ``TRUST_SECONDS`` and a little)."""
        self._seq += 1
        seq, subscribers = self._seq, list(self._subscribers)
        for subscriber in subscribers:
            subscriber.pending.extend(user_ids)
            subscriber.wake.set()
        deadline = time.monotonic() + TRUST_SECONDS * (1 + _SLACK) + _SLACK
        for subscriber in subscribers:
            while subscriber.acked < seq and subscriber in self._subscribers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.warning("a frontend did not acknowledge a user change in time; it no longer trusts it")
                    break
                subscriber.acked_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(subscriber.acked_changed.wait(), remaining)

    async def watch(self, acks: AsyncIterator[cpb.CredentialAck]) -> AsyncIterator[cpb.CredentialChanges]:
        """One frontend's stream: the current number first, then changes and heartbeats until it goes."""
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)
        subscriber.acked = self._seq  # it starts with an empty memory: nothing before now is its concern
        reader = asyncio.create_task(self._read_acks(acks, subscriber), name="credential-acks")
        trust_ms = int(TRUST_SECONDS * 1000)
        try:
            yield cpb.CredentialChanges(seq=self._seq, trust_ms=trust_ms)
            while not self._closed.is_set() and not reader.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(subscriber.wake.wait(), HEARTBEAT_SECONDS)
                subscriber.wake.clear()
                ids = subscriber.pending[:_MAX_IDS_PER_MESSAGE]
                del subscriber.pending[:_MAX_IDS_PER_MESSAGE]
                if subscriber.pending:
                    subscriber.wake.set()
                # The number sent is the latest only once every id up to it is in this or an earlier message.
                seq = self._seq if not subscriber.pending else subscriber.acked
                yield cpb.CredentialChanges(seq=seq, user_ids=ids, trust_ms=trust_ms)
        finally:
            self._subscribers.discard(subscriber)
            subscriber.acked_changed.set()
            reader.cancel()

    @staticmethod
    async def _read_acks(acks: AsyncIterator[cpb.CredentialAck], subscriber: _Subscriber) -> None:
        async for ack in acks:
            if ack.seq > subscriber.acked:
                subscriber.acked = ack.seq
                subscriber.acked_changed.set()

    def close(self) -> None:
        """End every stream (the service is stopping); the frontends stop trusting their memory."""
        self._closed.set()
        for subscriber in self._subscribers:
            subscriber.wake.set()
