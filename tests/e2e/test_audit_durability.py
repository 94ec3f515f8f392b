"""Every answered call keeps its audit entry, exactly once, whichever service is killed and when.

Management is paused (SIGSTOP) while the calls are made, so nothing can have been shipped when
the service that recorded them is killed: the entries can only come from its spool, after the
supervisor has started it again. A SaveLogs that reached management before the kill is stored
when management resumes, and the restarted service ships the same entries again; they must be
stored once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from conftest import admin, login, wait_back

from cloister.errors import AuthenticationError, CloisterError
from cloister.sdk import AuthenticationService, FrontendService
from cloister.testing import RunningPlatform

CALLS = 12


def _verify(platform: RunningPlatform, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cloister", "audit", "verify", "--state-dir", str(platform.state_dir), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@contextmanager
def _management_paused(platform: RunningPlatform) -> Iterator[None]:
    pid = platform.platform.processes["management"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _kill(platform: RunningPlatform, service: str) -> int:
    pid = platform.platform.processes[service].pid
    os.kill(pid, signal.SIGKILL)
    return pid


def _settled(platform: RunningPlatform, query: str, keep: Callable[[dict], bool], expect: int) -> list:
    """The entries ``query`` finds that ``keep`` accepts, once ``expect`` are there and no more arrive."""
    session = admin(platform)
    deadline = time.monotonic() + 30
    found: list = []
    while time.monotonic() < deadline:
        found = [e for e in session.frontend.query_audit_logs(query, 1000)["logs"] if keep(e)]
        if len(found) >= expect:
            break
        time.sleep(0.2)
    time.sleep(1.5)  # a duplicate shipped late would show now
    found = [e for e in session.frontend.query_audit_logs(query, 1000)["logs"] if keep(e)]
    session.close()
    return found


def test_frontend_killed_after_answering_keeps_every_entry_once(platform: RunningPlatform) -> None:
    stranger = FrontendService(*platform.connection_args("frontend"))
    stranger.metadata = {"id": f"nobody-{uuid.uuid4().hex[:8]}", "token": "forged"}
    with _management_paused(platform):
        for _ in range(CALLS):
            with pytest.raises(AuthenticationError):  # answered by the frontend, after authentication said no
                stranger.disable_function("function-x")
        old = _kill(platform, "frontend")
    stranger.close()
    wait_back(platform, "frontend", old)
    message = "authenticate to disable_function: authentication failed"
    found = _settled(platform, 'message:"authenticate to disable_function"', lambda e: e["message"] == message, CALLS)
    assert len(found) == CALLS
    assert _verify(platform).returncode == 0


def test_authentication_killed_after_answering_keeps_every_entry_once(platform: RunningPlatform) -> None:
    root = admin(platform)
    user, password = f"login-{uuid.uuid4().hex[:8]}", "a long password"
    root.auth.user_register(user, password, "DataOwner", "org")
    client = AuthenticationService(*platform.connection_args("authentication"))
    with _management_paused(platform):
        for _ in range(CALLS):
            client.user_login(user, password)
        old = _kill(platform, "authentication")
    client.close()
    root.close()
    wait_back(platform, "authentication", old)
    found = _settled(platform, "message:user_login", lambda e: e["user"] == f"{{ user: {user} }}", CALLS)
    assert len(found) == CALLS and all(e["result"] for e in found)
    assert _verify(platform).returncode == 0


def test_access_control_killed_after_answering_keeps_every_entry_once(platform: RunningPlatform) -> None:
    root = admin(platform)
    ids = [f"reg-{uuid.uuid4().hex[:8]}" for _ in range(CALLS)]
    with _management_paused(platform):
        for user in ids:  # authentication asks access control before each registration
            root.auth.user_register(user, "a long password", "DataOwner", "org")
        old = _kill(platform, "access_control")
    root.close()
    wait_back(platform, "access_control", old)

    def decision(entry: dict) -> bool:
        message = entry["message"]
        return message.startswith("authorize user.register user reg-") and message.split()[-1] in ids

    found = _settled(platform, 'message:"authorize user.register"', decision, CALLS)
    assert Counter(e["message"].split()[-1] for e in found) == Counter(ids)
    assert _verify(platform).returncode == 0


def test_management_killed_while_entries_are_shipped_loses_none(platform: RunningPlatform) -> None:
    root = admin(platform)
    user, password = f"busy-{uuid.uuid4().hex[:8]}", "a long password"
    root.auth.user_register(user, password, "DataOwner", "org")
    answered = [0] * 4
    stop = threading.Event()

    def logins(worker: int) -> None:
        session = login(platform, user, password)
        answered[worker] += 1
        while not stop.is_set():
            try:
                session.auth.user_login(user, password)
            except CloisterError:
                continue
            answered[worker] += 1
        session.close()

    threads = [threading.Thread(target=logins, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # entries are being shipped
    old = _kill(platform, "management")
    wait_back(platform, "management", old)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    root.close()
    total = sum(answered)
    assert total > CALLS
    found = _settled(platform, "message:user_login", lambda e: e["user"] == f"{{ user: {user} }}", total)
    assert len(found) == total
    assert _verify(platform).returncode == 0
