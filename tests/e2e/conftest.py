"""A real platform (seven processes, TLS, fresh state) shared by the tests of a module.

Its tasks may reach loopback URLs, where the tests serve their files (``make run`` allows the same).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_fixture_server import LOOPBACK_ENV

from cloister.rpc import addresses
from cloister.sdk import AuthenticationService, FrontendService
from cloister.testing import RunningPlatform, start_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with start_platform(tmp_path_factory.mktemp("platform"), env=LOOPBACK_ENV) as running:
        yield running


@pytest.fixture
def own_platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    """A platform for one test that stops, kills or restarts services."""
    with start_platform(tmp_path, env=LOOPBACK_ENV) as running:
        yield running


class Session:
    """A logged-in user's two clients."""

    def __init__(self, platform: RunningPlatform, user: str, password: str) -> None:
        self.user = user
        self.auth = AuthenticationService(*platform.connection_args("authentication"))
        self.auth.user_login(user, password)
        self.frontend = FrontendService(*platform.connection_args("frontend"))
        self.frontend.metadata = dict(self.auth.metadata or {})

    def close(self) -> None:
        self.auth.close()
        self.frontend.close()


NO_FUNCTIONS = {"registered_functions": [], "allowed_functions": []}
"""``list_functions`` of a user with none: every field is present, even empty."""


def login(platform: RunningPlatform, user: str, password: str) -> Session:
    return Session(platform, user, password)


def admin(platform: RunningPlatform) -> Session:
    return Session(platform, platform.admin_user, platform.admin_password)


def audit_entries(session: Session, query: str, expect: int, limit: int = 1000) -> list[dict]:
    """The entries ``query`` finds once there are ``expect`` of them (entries arrive within a
    second), or what it finds after 10 s; each a dict, as ``query_audit_logs`` returns them."""
    deadline = time.monotonic() + 10
    while True:
        found = session.frontend.query_audit_logs(query, limit)["logs"]
        if len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def wait_back(platform: RunningPlatform, name: str, old_pid: int, within: float = 5.0) -> float:
    """Seconds until ``name`` runs again as another process and says it is ready."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        pid = addresses.ready_pid(platform.platform.settings, name)
        process = platform.platform.processes.get(name)
        if pid is not None and pid != old_pid and process is not None and process.pid == pid:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{name} was not back within {within} s")
