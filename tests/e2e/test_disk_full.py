"""The state directory's disk fills: writes fail with RESOURCE_EXHAUSTED naming the service that is
out of space (never a path), what is stored reads back intact, every service stays up, and writes
succeed again once space is freed, without a restart. A real tmpfs is the state disk."""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Session, admin, audit_entries, login
from http_fixture_server import LOOPBACK_ENV
from tmpfs import fill, free_bytes, mounted_tmpfs

from cloister.errors import DiskFullError, StatusCode
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform, start_platform

STATE_DISK_BYTES = 48 * 1024 * 1024
OUT_OF_SPACE = "service is out of disk space; try again once space is freed"
SLEEPER = b"""
import time
def entrypoint(argv):
    time.sleep(2)
    return "slept through it"
"""
RUNNING = 4
INPUT_FILE = ("https://files.example/input", "aes-gcm-128", bytes(16), bytes(12), bytes(range(16)))


@pytest.fixture
def small_disk_platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    with mounted_tmpfs(tmp_path / "state", STATE_DISK_BYTES), start_platform(tmp_path, env=LOOPBACK_ENV) as running:
        assert os.path.ismount(running.state_dir)
        yield running


def _refused(call, service: str, state_dir: Path) -> None:
    with pytest.raises(DiskFullError) as refused:
        call()
    assert refused.value.status is StatusCode.RESOURCE_EXHAUSTED, refused.value
    assert refused.value.message == f"the {service} {OUT_OF_SPACE}"
    assert str(state_dir) not in refused.value.message


def _echo(session: Session, function_id: str, message: str) -> bytes:
    task_id = session.frontend.create_task(function_id, {"message": message}, "builtin")
    session.frontend.invoke_task(task_id)
    return session.frontend.get_task_result(task_id)


def test_a_full_state_disk_refuses_writes_clearly_and_heals_when_space_returns(
    small_disk_platform: RunningPlatform,
) -> None:
    platform = small_disk_platform
    root = admin(platform)
    root.auth.user_register("alice", "alice-password", "PlatformAdmin")
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    file_id = root.frontend.register_input_file(*INPUT_FILE)
    before = root.frontend.create_task(function_id, {"message": "before"}, "builtin")
    root.frontend.invoke_task(before)
    assert root.frontend.get_task_result(before) == b"before"
    pids = {name: process.pid for name, process in platform.platform.processes.items()}
    sleeper = root.frontend.create_task(
        root.frontend.register_function("sleeper", "sleeps 2 s", "python", payload=SLEEPER), {}, "python"
    )
    root.frontend.invoke_task(sleeper)
    while root.frontend.get_task(sleeper)["status"] != RUNNING:
        time.sleep(0.05)

    filler = fill(platform.state_dir)
    assert free_bytes(platform.state_dir) < 64 * 1024
    try:
        _refused(
            lambda: root.auth.user_register("bob", "bob-password", "PlatformAdmin"),
            "authentication",
            platform.state_dir,
        )
        _refused(
            lambda: root.frontend.register_function(
                "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("m")]
            ),
            "storage",
            platform.state_dir,
        )
        _refused(lambda: root.frontend.register_input_file(*INPUT_FILE), "storage", platform.state_dir)
        _refused(
            lambda: root.frontend.create_task(function_id, {"message": "full"}, "builtin"),
            "storage",
            platform.state_dir,
        )

        # What was stored before reads back whole, and logging in works (it writes nothing).
        assert root.frontend.get_function(function_id)["name"] == "builtin-echo"
        assert root.frontend.get_task_result(before) == b"before"
        assert base64.b64decode(root.frontend.get_input_file(file_id)["cmac"]) == INPUT_FILE[4]
        alice = login(platform, "alice", "alice-password")
        assert "builtin-echo" in str(alice.frontend.get_function(function_id)["name"])
        alice.close()

        # The running task ends meanwhile; its result cannot be stored, so it stays Running until
        # there is room again (execution keeps reporting it), and is not failed as lost.
        time.sleep(3)
        assert root.frontend.get_task(sleeper)["status"] == RUNNING
    finally:
        filler.unlink()
    assert root.frontend.get_task_result(sleeper) == b"slept through it"

    # Space is back: the same processes take writes again, with no restart.
    root.auth.user_register("bob", "bob-password", "PlatformAdmin")
    bob = login(platform, "bob", "bob-password")
    again = bob.frontend.register_function("builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")])
    assert _echo(bob, again, "after") == b"after"
    assert _echo(root, function_id, "and again") == b"and again"
    # The audit entries of the refused calls were kept and arrive once management can store them.
    refused = audit_entries(root, 'message:"out of disk space"', 4)
    assert len(refused) >= 4 and not any(e["result"] for e in refused)
    assert not any(str(platform.state_dir) in e["message"] for e in refused)
    # The file logs of the episode hold what could be written: the recovery, and what was lost.
    storage_log = (platform.state_dir / "logs" / "storage.log").read_text()
    assert "has room again; writes succeed" in storage_log
    logs = "".join(path.read_text() for path in (platform.state_dir / "logs").glob("*.log"))
    assert "log records were dropped while the disk was full" in logs
    users = list(platform.state_dir.rglob("users.db"))
    assert len(users) == 1
    for database in (platform.platform.settings.database_path, *users):
        check = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",), database
        finally:
            check.close()
    bob.close()
    root.close()
    assert {name: process.pid for name, process in platform.platform.processes.items()} == pids
    assert set(platform.platform.restarts().values()) == {0}
    assert platform.platform.exited() == {}
