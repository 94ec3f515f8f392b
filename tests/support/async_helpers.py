"""Running async test bodies without a plugin, and waiting for a condition without sleeps in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


def run(body: Callable[[], Awaitable[None]], timeout: float = 20) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout))  # type: ignore[arg-type]


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition`` holds (bounded, so a broken test fails)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")
