"""Retrying against a peer that is down, and background loops that never end silently.

Every service retries the same way: pauses that double up to a limit, each drawn at random
between half and all of the current step, so that services restarted together do not retry
in step. A long-lived loop runs under :func:`supervised`, which logs and restarts it whatever
ended it, except the loop's own cancellation when its service stops.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Backoff:
    """Pauses between retries: ``first`` doubling up to ``limit``, each jittered down by up to half."""

    def __init__(self, first: float = 0.2, limit: float = 5.0, uniform: Callable[[float, float], float] | None = None):
        self._first = min(first, limit)
        self._limit = limit
        self._step = self._first
        self._uniform = uniform or random.uniform

    def next(self) -> float:
        """The next pause, in seconds; the one after it is (up to) twice as long."""
        pause = self._uniform(self._step / 2, self._step)
        self._step = min(self._step * 2, self._limit)
        return pause

    def reset(self) -> None:
        """The peer answered: the next failure starts again from the first, short pause."""
        self._step = self._first

    async def sleep(self) -> float:
        """Sleep the next pause and return how long it was."""
        pause = self.next()
        await asyncio.sleep(pause)
        return pause


async def supervised(
    name: str,
    loop: Callable[[], Awaitable[None]],
    *,
    done: Callable[[], bool] = lambda: False,
    backoff: Backoff | None = None,
) -> None:
    """Run ``loop()`` for ever: when it returns or raises, log why and start it again after a pause.

    Only the cancellation of the task running this (its service stopping) ends it, or ``loop``
    returning once ``done()`` is true. A ``CancelledError`` that reaches here while nobody
    cancelled this task came from a callee (a closed channel, say): it is a failure of the
    loop like any other.
    """
    backoff = backoff or Backoff()
    while True:
        try:
            await loop()
            if done():
                return
            logger.error("%s ended unexpectedly; restarting it", name)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            logger.error("%s was cancelled from within; restarting it", name)
        except Exception:
            logger.exception("%s failed; restarting it", name)
        await backoff.sleep()
