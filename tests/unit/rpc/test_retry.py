"""Jittered backoff, and supervised loops that restart whatever ends them but their own cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cloister.rpc import retry
from cloister.rpc.retry import Backoff, supervised


def test_pauses_double_up_to_the_limit_each_jittered_within_its_upper_half() -> None:
    bounds: list[tuple[float, float]] = []
    backoff = Backoff(first=0.2, limit=1.0, uniform=lambda low, high: bounds.append((low, high)) or high)
    assert [backoff.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert bounds[0] == (0.1, 0.2) and bounds[3] == (0.5, 1.0)
    backoff.reset()
    assert backoff.next() == 0.2


def test_real_jitter_spreads_pauses() -> None:
    pauses = {round(Backoff(first=1.0, limit=1.0).next(), 6) for _ in range(50)}
    assert len(pauses) > 40 and all(0.5 <= pause <= 1.0 for pause in pauses)


@pytest.fixture(autouse=True)
def _no_real_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(self: Backoff) -> float:
        await asyncio.sleep(0)
        return 0.0

    monkeypatch.setattr(retry.Backoff, "sleep", instant)


def test_a_loop_that_fails_returns_or_is_cancelled_from_within_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[str] = []

    async def loop() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise RuntimeError("boom")
        if len(runs) == 2:
            raise asyncio.CancelledError  # as a call on a channel closed under it raises
        if len(runs) == 3:
            return
        await asyncio.Event().wait()  # the fourth run keeps going

    async def scenario() -> None:
        task = asyncio.create_task(supervised("the test loop", loop))
        for _ in range(100):
            await asyncio.sleep(0)
        assert len(runs) == 4 and not task.done()
        task.cancel()  # the service stopping
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "the test loop failed; restarting it",
        "the test loop was cancelled from within; restarting it",
        "the test loop ended unexpectedly; restarting it",
    ]


def test_a_loop_that_returns_when_done_is_not_restarted() -> None:
    stopping = asyncio.Event()
    runs = []

    async def loop() -> None:
        runs.append(1)
        stopping.set()

    asyncio.run(supervised("slot", loop, done=stopping.is_set))
    assert runs == [1]
