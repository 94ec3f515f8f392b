"""CredentialFeed: a change returns once every frontend has acknowledged it, or once a silent
frontend can no longer trust what it remembers; each frontend hears every changed user."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from cloister._proto import cloister_pb2 as cpb
from cloister.services.authentication import feed as feed_module
from cloister.services.authentication.feed import CredentialFeed


class Frontend:
    """One subscriber: reads the stream, and acknowledges what it read unless told to stay silent."""

    def __init__(self, feed: CredentialFeed, acknowledge: bool = True) -> None:
        self.received: list[cpb.CredentialChanges] = []
        self._acks: asyncio.Queue[cpb.CredentialAck | None] = asyncio.Queue()
        self._acknowledge = acknowledge
        self.task = asyncio.create_task(self._run(feed))

    async def _acks_sent(self) -> AsyncIterator[cpb.CredentialAck]:
        while (ack := await self._acks.get()) is not None:
            yield ack

    async def _run(self, feed: CredentialFeed) -> None:
        async for message in feed.watch(self._acks_sent()):
            self.received.append(message)
            if self._acknowledge:
                self._acks.put_nowait(cpb.CredentialAck(seq=message.seq))

    def named(self) -> list[str]:
        return [user for message in self.received for user in message.user_ids]

    def leave(self) -> None:
        self._acks.put_nowait(None)


@pytest.fixture(autouse=True)
def short_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "TRUST_SECONDS", 0.3)
    monkeypatch.setattr(feed_module, "HEARTBEAT_SECONDS", 0.05)


def test_a_change_returns_once_every_frontend_has_acknowledged_it() -> None:
    async def go() -> None:
        feed = CredentialFeed()
        one, two = Frontend(feed), Frontend(feed)
        await asyncio.sleep(0.01)
        await feed.changed(["alice"])
        assert one.named() == ["alice"] and two.named() == ["alice"]
        await feed.changed(["bob", "carol"])
        assert two.named() == ["alice", "bob", "carol"]
        assert one.received[0].user_ids == [] and one.received[0].trust_ms == 300  # the first says how long to trust
        feed.close()
        await asyncio.gather(one.task, two.task)

    asyncio.run(go())


def test_a_silent_frontend_delays_a_change_only_until_it_stops_trusting_its_memory() -> None:
    async def go() -> None:
        feed = CredentialFeed()
        silent = Frontend(feed, acknowledge=False)
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await feed.changed(["alice"])
        waited = time.monotonic() - started
        assert waited >= 0.3, "returned while the silent frontend might still use what it knew"
        assert silent.named() == ["alice"]
        feed.close()
        await silent.task

    asyncio.run(go())


def test_a_frontend_that_left_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "TRUST_SECONDS", 1000.0)  # waiting for it would never end here

    async def go() -> None:
        feed = CredentialFeed()
        gone = Frontend(feed, acknowledge=False)
        await asyncio.sleep(0.01)
        gone.leave()
        await gone.task
        await asyncio.wait_for(feed.changed(["alice"]), 30)
        feed.close()

    asyncio.run(go())


def test_heartbeats_keep_a_quiet_feed_alive_and_carry_the_latest_number() -> None:
    async def go() -> None:
        feed = CredentialFeed()
        await feed.changed(["before-anyone-listened"])
        frontend = Frontend(feed)
        await asyncio.sleep(0.3)
        assert len(frontend.received) >= 3
        assert {m.seq for m in frontend.received} == {1}
        assert frontend.named() == [], "changes from before it joined are not its concern: it starts empty"
        feed.close()
        await frontend.task

    asyncio.run(go())


def test_a_frontend_joining_while_a_change_waits_still_hears_later_changes() -> None:
    async def go() -> None:
        feed = CredentialFeed()
        silent = Frontend(feed, acknowledge=False)
        await asyncio.sleep(0.01)
        waiting = asyncio.create_task(feed.changed(["alice"]))
        await asyncio.sleep(0.01)
        late = Frontend(feed)
        await asyncio.sleep(0.01)
        await feed.changed(["bob"])
        assert "bob" in late.named()
        await waiting
        feed.close()
        await asyncio.gather(silent.task, late.task)

    asyncio.run(go())
