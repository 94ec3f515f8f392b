"""The frontend asks authentication about a token once, then remembers the answer; any change to
the user ends that token on the very next call, also after authentication restarts, and a
frontend that cannot hear authentication trusts nothing it remembers."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest
from conftest import Session, admin, login, wait_back

from cloister.errors import AuthenticationError, UnavailableError
from cloister.testing import RunningPlatform


def checks_by_authentication(platform: RunningPlatform) -> int:
    """How many UserAuthenticate calls authentication has answered (one log line each)."""
    count = 0
    for path in platform.platform.log_dir.glob("authentication.log*"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            count += record.get("method") == "UserAuthenticate" and record.get("message", "").startswith(
                "UserAuthenticate"
            )
    return count


def calls_asking_authentication(platform: RunningPlatform, session: Session, calls: int = 10) -> int:
    before = checks_by_authentication(platform)
    for _ in range(calls):
        session.frontend.list_functions(session.user)
    return checks_by_authentication(platform) - before


def remembered_again(platform: RunningPlatform, session: Session) -> bool:
    """Whether the frontend comes to remember the session's token within 15 s (it follows the feed again)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if calls_asking_authentication(platform, session, 3) == 0:
                return True
        except UnavailableError:
            pass
        time.sleep(0.2)
    return False


def refused_at_once(session: Session) -> bool:
    try:
        session.frontend.list_functions(session.user)
    except AuthenticationError as exc:
        assert exc.message == "incorrent credential"
        return True
    return False


def test_a_token_is_asked_about_once_then_remembered(platform: RunningPlatform) -> None:
    root = admin(platform)
    root.auth.user_register("rememberer", "pw-1", "DataOwner", "org-r")
    user = login(platform, "rememberer", "pw-1")
    calls_asking_authentication(platform, user, 3)  # the first call asks
    assert calls_asking_authentication(platform, user) == 0
    time.sleep(1.1)  # a token names its expiry in whole seconds: a login a second later gets another one
    other = login(platform, "rememberer", "pw-1")
    assert other.frontend.metadata != user.frontend.metadata  # a second token of the same user is asked about once
    assert calls_asking_authentication(platform, other) == 1
    for session in (root, user, other):
        session.close()


CHANGES: dict[str, Callable[[Session, Session], object]] = {
    "own password": lambda root, user: user.auth.user_change_password("pw-new"),
    "password reset": lambda root, user: root.auth.reset_user_password(user.user),
    "role change": lambda root, user: root.auth.user_update(user.user, "pw-2", "FunctionOwner", "org-c"),
    "deletion": lambda root, user: root.auth.delete_user(user.user),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_to_the_user_ends_a_remembered_token_on_the_next_call(platform: RunningPlatform, change: str) -> None:
    root = admin(platform)
    for attempt in range(5):  # the change and the next call race; they must never cross
        name = f"changed-{change.replace(' ', '-')}-{attempt}"
        root.auth.user_register(name, "pw-1", "DataOwner", "org-c")
        user = login(platform, name, "pw-1")
        assert calls_asking_authentication(platform, user, 3) >= 0 and not refused_at_once(user)
        CHANGES[change](root, user)
        assert refused_at_once(user), f"{change}: the old token still worked right after the change"
        user.close()
    root.close()


def test_after_authentication_restarts_tokens_are_remembered_and_ended_as_before(
    own_platform: RunningPlatform,
) -> None:
    root = admin(own_platform)
    root.auth.user_register("survivor", "pw-1", "DataOwner", "org-s")
    old_pid = own_platform.platform.processes["authentication"].pid
    os.kill(old_pid, signal.SIGKILL)
    wait_back(own_platform, "authentication", old_pid)

    user = login(own_platform, "survivor", "pw-1")
    assert remembered_again(own_platform, user), "the frontend follows the restarted process's feed"
    user.auth.user_change_password("pw-2")
    assert refused_at_once(user)
    user.close()
    root.close()


def test_a_frontend_that_cannot_hear_authentication_trusts_nothing_it_remembers(own_platform: RunningPlatform) -> None:
    root = admin(own_platform)
    calls_asking_authentication(own_platform, root, 3)
    pid = own_platform.platform.processes["authentication"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(2.5)  # longer than the feed's trust (2 s) without a message
        with pytest.raises(UnavailableError, match="authentication"):
            root.frontend.list_functions(root.user)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert remembered_again(own_platform, root)
    root.close()
