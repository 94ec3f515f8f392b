"""Failed-login limits per user id and per client address, so passwords cannot be guessed at speed.

A login is refused without checking its password once its user id, or the address it comes
from, has failed ``limit`` times within the window; it is allowed again when the oldest of
those failures leaves the window. Unknown user ids count like known ones, so the refusal says
nothing about which ids exist. The counts live in memory: a restart forgets them, and the
number of ids and addresses tracked is bounded, the least recently failed forgotten first.
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


class LoginThrottle:
    def __init__(self, per_user: int, per_address: int, window_seconds: float, clock: Callable[[], float]) -> None:
        self._users = _Window(per_user, window_seconds)
        self._addresses = _Window(per_address, window_seconds)
        self._clock = clock

    def check(self, user_id: str, address: str) -> None:
        """Raise :class:`TooManyFailedLoginsError` if a login for ``user_id`` from ``address`` must wait."""
        now = self._clock()
        limits = ((self._users, user_id, "for this user id"), (self._addresses, address, "from this address"))
        for window, key, which in limits:
            wait = window.retry_after(key, now)
            if wait > 0:
                raise TooManyFailedLoginsError(
                    f"too many failed logins {which} ({window.limit} within {window.seconds:g} s); "
                    f"try again in {math.ceil(wait)} s"
                )

    def failed(self, user_id: str, address: str) -> None:
        now = self._clock()
        self._users.add(user_id, now)
        self._addresses.add(address, now)

    def succeeded(self, user_id: str) -> None:
        """A correct password ends the user id's count (not the address's: it may be guessing others)."""
        self._users.clear(user_id)
