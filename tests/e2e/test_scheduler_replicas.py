"""Two schedulers against one storage: the standby takes over when the active one stops answering,
tasks go on running, and the old one, woken, stands by instead of dispatching a second time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import admin
from http_fixture_server import LOOPBACK_ENV

from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform, start_platform

LEASE = "2"


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[RunningPlatform, Path, dict[str, str]]]:
    env = {**LOOPBACK_ENV, "CLOISTER_SCHEDULER__LEASE_SECONDS": LEASE, "CLOISTER_RPC__PEER_TIMEOUT_SECONDS": "3"}
    with start_platform(tmp_path, env=env) as running:
        yield running, tmp_path, env


def _wait_for(predicate, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {within} s")
        time.sleep(0.1)


def _echo(session, message: str) -> bytes:
    function_id = session.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    task_id = session.frontend.create_task(function_id, {"message": message}, "builtin")
    session.frontend.invoke_task(task_id)
    return session.frontend.get_task_result(task_id)


def test_a_standby_scheduler_takes_over_and_the_old_one_stands_by(replicated) -> None:
    running, directory, env = replicated
    log = directory / "standby.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    command = ["service", "scheduler", "--instance", "standby", "--state-dir", str(running.state_dir)]
    command += ["--config", str(directory / "cloister.toml"), "--log-file", str(log)]
    standby = subprocess.Popen(
        [sys.executable, "-m", "cloister", *command],
        env={**environment, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        root = admin(running)
        assert _echo(root, "before") == b"before"
        _wait_for(lambda: log.exists() and "standing by" in log.read_text(), 30, "the standby did not stand by")
        assert "holds the lease" not in log.read_text()

        first = running.platform.processes["scheduler"].pid
        os.kill(first, signal.SIGSTOP)  # silent, as a host cut off or a process frozen
        try:
            _wait_for(lambda: "holds the lease" in log.read_text(), 30, "the standby did not take over")
            assert _echo(root, "during") == b"during"
        finally:
            os.kill(first, signal.SIGCONT)
        # Woken, the first finds its lease taken and stops; restarted, it stands by.
        _wait_for(lambda: running.platform.processes["scheduler"].pid != first, 30, "the old scheduler did not leave")
        assert _echo(root, "after") == b"after"
        assert standby.poll() is None, "the standby that took over must still serve"
        root.close()
    finally:
        standby.send_signal(signal.SIGTERM)
        try:
            standby.wait(30)
        except subprocess.TimeoutExpired:
            standby.kill()
            standby.wait()
