"""Long polls: one cap on what a service grants, one margin on what a caller allows, one setting."""

from __future__ import annotations

import pytest

from cloister.config import RPCSettings
from cloister.errors import ConfigurationError
from cloister.rpc.convert.tasks import wait_seconds
from cloister.rpc.long_poll import LONG_POLL_MARGIN_SECONDS, MAX_LONG_POLL_SECONDS, granted_wait, long_poll_deadline


def test_a_service_grants_at_most_the_longest_wait_and_never_less_than_none() -> None:
    assert granted_wait(5) == 5
    assert granted_wait(3600) == MAX_LONG_POLL_SECONDS
    assert granted_wait(-1) == 0
    assert wait_seconds(3_600_000) == MAX_LONG_POLL_SECONDS  # WaitTask's timeout_ms, capped the same way


def test_a_callers_deadline_is_the_granted_wait_and_the_margin() -> None:
    assert long_poll_deadline(5) == 5 + LONG_POLL_MARGIN_SECONDS
    # Asking for more than any service grants does not make a caller wait longer for a dead answer.
    assert long_poll_deadline(3600) == MAX_LONG_POLL_SECONDS + LONG_POLL_MARGIN_SECONDS


@pytest.mark.parametrize("bad", [0, -1, MAX_LONG_POLL_SECONDS + 1, True])
def test_the_long_poll_setting_is_a_wait_a_service_grants(bad: object) -> None:
    with pytest.raises((ValueError, ConfigurationError)):
        RPCSettings(long_poll_seconds=bad)
    assert RPCSettings(long_poll_seconds=MAX_LONG_POLL_SECONDS).long_poll_seconds == MAX_LONG_POLL_SECONDS
