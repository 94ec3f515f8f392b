"""The failed-login limits: attempts counted when let in, a sliding window, bounded memory."""

from __future__ import annotations

import ipaddress

import pytest

from cloister.services.authentication import throttle
from cloister.services.authentication.throttle import LoginThrottle, TooManyFailedLoginsError, address_key


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attempts_in_flight_count_before_any_password_is_checked() -> None:
    limits = LoginThrottle(per_user=3, per_address=100, window_seconds=60, clock=Clock())
    in_flight = [limits.begin("victim", f"a{n}") for n in range(3)]
    with pytest.raises(TooManyFailedLoginsError):
        limits.begin("victim", "a9")
    in_flight[0].succeeded()  # a right password ends the user id's count
    limits.begin("victim", "a9")


def test_a_success_takes_only_its_own_attempt_off_the_address() -> None:
    limits = LoginThrottle(per_user=100, per_address=2, window_seconds=60, clock=Clock())
    limits.begin("guess-1", "addr")
    limits.begin("mine", "addr").succeeded()
    limits.begin("guess-2", "addr")
    with pytest.raises(TooManyFailedLoginsError, match="from this address"):
        limits.begin("guess-3", "addr")


def test_the_window_slides_one_failure_at_a_time() -> None:
    clock = Clock()
    limits = LoginThrottle(per_user=2, per_address=100, window_seconds=60, clock=clock)
    limits.begin("u", "a1")
    clock.now += 30
    limits.begin("u", "a2")
    with pytest.raises(TooManyFailedLoginsError, match="try again in 30 s"):
        limits.begin("u", "a3")
    clock.now += 30  # the first failure leaves the window
    limits.begin("u", "a3")
    with pytest.raises(TooManyFailedLoginsError):
        limits.begin("u", "a4")


def test_ids_too_long_to_exist_share_one_count() -> None:
    limits = LoginThrottle(per_user=1, per_address=100, window_seconds=60, clock=Clock())
    limits.begin("x" * 10_000 + "1", "a")
    with pytest.raises(TooManyFailedLoginsError):
        limits.begin("x" * 10_000 + "2", "b")


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "MAX_TRACKED", 10)
    limits = LoginThrottle(per_user=1, per_address=1000, window_seconds=60, clock=Clock())
    for index in range(50):
        limits.begin(f"user{index}", f"addr{index % 3}")
    assert len(limits._users._failures) == 10
    limits.begin("user0", "addr9")  # forgotten: the oldest go first
    with pytest.raises(TooManyFailedLoginsError):
        limits.begin("user49", "addr9")


def test_an_ipv6_client_counts_by_its_64() -> None:
    def key(text: str) -> str:
        address = ipaddress.ip_address(text)
        packed = address.packed if address.version == 6 else bytes(12) + address.packed
        return address_key(packed)

    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9")
    assert key("2001:db8:1:2::1") != key("2001:db8:1:3::1")
    assert key("10.0.0.1") != key("10.0.0.2")
