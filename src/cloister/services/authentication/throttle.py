"""Failed-login limits per user id and per client address, so passwords cannot be guessed at speed.

A login is refused without checking its password once its user id, or the address it comes
from, has failed ``limit`` times within the window; it is allowed again when the oldest of
those failures leaves the window. An attempt counts as failed from the moment it is let in
until its password proves right, so guesses sent all at once are counted before any of them
is checked. Unknown user ids count like known ones, so the refusal says nothing about which
ids exist. An IPv6 client counts by its /64, which one subscriber usually holds whole. The
counts live in memory: a restart forgets them, and the number of ids and addresses tracked is
bounded, the least recently failed forgotten first.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable

from cloister.errors import ResourceExhaustedError

MAX_TRACKED = 100_000
"""Ids or addresses remembered per kind; beyond that the least recently failed is forgotten."""
MAX_KEY_LENGTH = 300
"""Longer ids and addresses are counted by their first characters: no id that long can exist."""


class TooManyFailedLoginsError(ResourceExhaustedError):
    """RESOURCE_EXHAUSTED: the limit was reached; the message says which and for how long."""


class _Window:
    """Failure times per key, within the last ``seconds``."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        key = key[:MAX_KEY_LENGTH]
        failures = self._recent(key, now)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return failures[-self.limit] + self.seconds - now

    def add(self, key: str, now: float) -> None:
        key = key[:MAX_KEY_LENGTH]
        failures = self._recent(key, now)
        if failures is None:
            failures = self._failures[key] = deque(maxlen=self.limit)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
        failures.append(now)
        self._failures.move_to_end(key)

    def clear(self, key: str) -> None:
        self._failures.pop(key[:MAX_KEY_LENGTH], None)

    def discard(self, key: str, when: float) -> None:
        """Forget the one failure counted at ``when``, if it is still counted."""
        failures = self._failures.get(key[:MAX_KEY_LENGTH])
        if failures is not None and when in failures:
            failures.remove(when)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.seconds:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures


def address_key(packed: bytes) -> str:
    """What one client address counts as: the whole IPv4 address (IPv4-compatible form), an IPv6 /64."""
    if len(packed) == 16 and not any(packed[:12]):
        return packed.hex()
    return packed[:8].hex() + "/64"


class LoginAttempt:
    """A login let in and counted as failed until :meth:`succeeded` says its password was right."""

    def __init__(self, throttle: LoginThrottle, user_id: str, address: str, when: float) -> None:
        self._throttle = throttle
        self._user_id = user_id
        self._address = address
        self._when = when

    def succeeded(self) -> None:
        """A correct password ends the user id's count, and takes this attempt off the address's
        (not the rest: that address may be guessing other ids)."""
        self._throttle._users.clear(self._user_id)
        self._throttle._addresses.discard(self._address, self._when)


class LoginThrottle:
    def __init__(self, per_user: int, per_address: int, window_seconds: float, clock: Callable[[], float]) -> None:
        self._users = _Window(per_user, window_seconds)
        self._addresses = _Window(per_address, window_seconds)
        self._clock = clock

    def begin(self, user_id: str, address: str) -> LoginAttempt:
        """Let a login for ``user_id`` from ``address`` in, counted as failed, or raise
        :class:`TooManyFailedLoginsError` if either has failed too often. Check and count happen
        together, with nothing to wait for in between."""
        now = self._clock()
        limits = ((self._users, user_id, "for this user id"), (self._addresses, address, "from this address"))
        for window, key, which in limits:
            wait = window.retry_after(key, now)
            if wait > 0:
                raise TooManyFailedLoginsError(
                    f"too many failed logins {which} ({window.limit} within {window.seconds:g} s); "
                    f"try again in {math.ceil(wait)} s"
                )
        self._users.add(user_id, now)
        self._addresses.add(address, now)
        return LoginAttempt(self, user_id, address, now)
