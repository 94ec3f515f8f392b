"""The failed-login limits: a sliding window per key, bounded memory, long keys counted together."""

from __future__ import annotations

import pytest

from cloister.services.authentication import throttle
from cloister.services.authentication.throttle import LoginThrottle, TooManyFailedLoginsError


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides_one_failure_at_a_time() -> None:
    clock = Clock()
    limits = LoginThrottle(per_user=2, per_address=100, window_seconds=60, clock=clock)
    limits.failed("u", "a1")
    clock.now += 30
    limits.failed("u", "a2")
    with pytest.raises(TooManyFailedLoginsError, match="try again in 30 s"):
        limits.check("u", "a3")
    clock.now += 30  # the first failure leaves the window
    limits.check("u", "a3")
    limits.failed("u", "a3")
    with pytest.raises(TooManyFailedLoginsError):
        limits.check("u", "a4")


def test_ids_too_long_to_exist_share_one_count() -> None:
    limits = LoginThrottle(per_user=1, per_address=100, window_seconds=60, clock=Clock())
    limits.failed("x" * 10_000 + "1", "a")
    with pytest.raises(TooManyFailedLoginsError):
        limits.check("x" * 10_000 + "2", "b")


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "MAX_TRACKED", 10)
    limits = LoginThrottle(per_user=1, per_address=1000, window_seconds=60, clock=Clock())
    for index in range(50):
        limits.failed(f"user{index}", f"addr{index % 3}")
    assert len(limits._users._failures) == 10
    limits.check("user0", "addr9")  # forgotten: the oldest go first
    with pytest.raises(TooManyFailedLoginsError):
        limits.check("user49", "addr9")
