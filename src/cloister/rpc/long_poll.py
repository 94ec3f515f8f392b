"""Long polls: calls a service holds open until something happens (a task to hand out, a record
or queue that changes, a task that ends) or a wait runs out, then made again.

Every long poll, whoever makes or serves it, takes its numbers from here: the longest wait a
service grants, and how much later than the wait the caller's deadline falls (time for the
answer to arrive). How long a service's own long polls wait is the ``[rpc] long_poll_seconds``
setting.
"""

from __future__ import annotations

from cloister.config import MAX_LONG_POLL_SECONDS

LONG_POLL_MARGIN_SECONDS = 10.0
"""How much later than its wait a long poll's deadline falls."""


def granted_wait(seconds: float) -> float:
    """The wait a service grants a long poll asking for ``seconds``: none below 0, none above the maximum."""
    return min(max(seconds, 0.0), MAX_LONG_POLL_SECONDS)


def long_poll_deadline(wait: float) -> float:
    """The deadline of a call the peer may hold for ``wait`` seconds."""
    return granted_wait(wait) + LONG_POLL_MARGIN_SECONDS


__all__ = ["LONG_POLL_MARGIN_SECONDS", "MAX_LONG_POLL_SECONDS", "granted_wait", "long_poll_deadline"]
