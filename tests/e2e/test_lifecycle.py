"""Cancellation, executor loss and restarts, each on a platform of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import admin

from cloister.errors import ExecutorLostError, TaskCancelledError
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform

FAKE_EXECUTOR = Path(__file__).with_name("stalled_executor.py")


def _echo(session, message: str) -> str:
    function_id = session.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    return session.frontend.create_task(function_id, {"message": message}, "builtin")


def test_cancel_queued_task(own_platform: RunningPlatform) -> None:
    own_platform.platform.stop_service("execution")
    root = admin(own_platform)
    task_id = _echo(root, "never runs")
    root.frontend.invoke_task(task_id)
    assert root.frontend.get_task(task_id)["status"] == 3  # Staged: no executor is running

    root.frontend.cancel_task(task_id)
    with pytest.raises(TaskCancelledError, match="Task Canceled by the user"):
        root.frontend.get_task_result(task_id)

    own_platform.platform.start_service("execution")
    later = _echo(root, "runs")
    root.frontend.invoke_task(later)
    assert root.frontend.get_task_result(later) == b"runs"
    assert root.frontend.get_task(task_id)["status"] == 20  # still Canceled, never executed


def test_executor_killed_mid_task_fails_the_task(own_platform: RunningPlatform) -> None:
    own_platform.platform.stop_service("execution")
    root = admin(own_platform)
    task_id = _echo(root, "stalls")
    # A real executor process holding the execution identity pulls the task and then
    # stops answering, the way a crashed execution service does.
    executor = _stalled_executor(own_platform)
    try:
        assert executor.stdout is not None
        root.frontend.invoke_task(task_id)
        assert executor.stdout.readline().strip() == "pulled"
        assert root.frontend.get_task(task_id)["status"] == 4  # Running
    finally:
        _close(executor)
    with pytest.raises(ExecutorLostError, match="Executor Timeout"):
        root.frontend.get_task_result(task_id)
    assert root.frontend.get_task(task_id)["status"] == 99


def _stalled_executor(platform: RunningPlatform) -> subprocess.Popen[str]:
    executor = subprocess.Popen(
        [sys.executable, str(FAKE_EXECUTOR), str(platform.state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert executor.stdout is not None
    assert executor.stdout.readline().strip() == "waiting"
    return executor


def _close(executor: subprocess.Popen[str]) -> None:
    executor.kill()
    executor.wait()
    for stream in (executor.stdin, executor.stdout):
        if stream is not None:
            stream.close()


def test_a_result_reported_after_cancellation_is_refused_and_changes_nothing(own_platform: RunningPlatform) -> None:
    own_platform.platform.stop_service("execution")
    root = admin(own_platform)
    task_id = _echo(root, "cancelled while running")
    executor = _stalled_executor(own_platform)
    try:
        assert executor.stdin is not None and executor.stdout is not None
        root.frontend.invoke_task(task_id)
        assert executor.stdout.readline().strip() == "pulled"
        assert root.frontend.get_task(task_id)["status"] == 4  # Running
        root.frontend.cancel_task(task_id)
        with pytest.raises(TaskCancelledError, match="Task Canceled by the user"):
            root.frontend.get_task_result(task_id)
        executor.stdin.write("report\n")
        executor.stdin.flush()
        assert executor.stdout.readline().strip() == "refused INTERNAL"  # the reference's code for it
    finally:
        _close(executor)
    task = root.frontend.get_task(task_id)
    assert task["status"] == 20  # still Canceled: ended is final
    assert task["result"]["Err"]["reason"] == "Task Canceled by the user"


def test_a_queued_task_survives_a_scheduler_crash_and_runs_once(own_platform: RunningPlatform) -> None:
    platform = own_platform.platform
    platform.stop_service("execution")
    root = admin(own_platform)
    task_id = _echo(root, "queued across a crash")
    root.frontend.invoke_task(task_id)
    assert root.frontend.get_task(task_id)["status"] == 3  # Staged, never handed out
    platform.kill_service("scheduler")
    platform.start_service("scheduler")
    platform.start_service("execution")
    assert root.frontend.get_task_result(task_id) == b"queued across a crash"
    bare = task_id.removeprefix("task-")
    logs = own_platform.state_dir / "logs"
    runs = sum(p.read_text().count(f"running task {bare}") for p in logs.glob("execution*.log"))
    assert runs == 1


def test_everything_survives_a_restart(own_platform: RunningPlatform) -> None:
    root = admin(own_platform)
    root.auth.user_register("dora", "dora-password", "PlatformAdmin", "")
    task_id = _echo(root, "before restart")
    root.frontend.invoke_task(task_id)
    assert root.frontend.get_task_result(task_id) == b"before restart"
    pending = _echo(root, "created before restart")
    function_id = root.frontend.get_task(task_id)["function_id"]
    token = root.auth.metadata

    own_platform.restart()

    again = admin(own_platform)
    assert "dora" in again.auth.list_users(own_platform.admin_user)
    assert again.frontend.get_function(function_id)["name"] == "builtin-echo"
    assert again.frontend.get_task(task_id)["result"]["Ok"]["return_value"]
    again.frontend.invoke_task(pending)
    assert again.frontend.get_task_result(pending) == b"created before restart"
    # A token issued before the restart is still accepted.
    old = admin(own_platform)
    old.frontend.metadata = dict(token or {})
    assert old.frontend.get_task(task_id)["status"] == 10


def test_acknowledged_writes_survive_kill_9(own_platform: RunningPlatform) -> None:
    root = admin(own_platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "written just before the crash", "builtin", arguments=[FunctionArgument("message")]
    )
    task_id = root.frontend.create_task(function_id, {"message": "after the crash"}, "builtin")
    for name in ("storage", "management", "scheduler"):
        own_platform.platform.kill_service(name)
    for name in ("storage", "management", "scheduler"):
        own_platform.platform.start_service(name)

    again = admin(own_platform)
    assert again.frontend.get_function(function_id)["description"] == "written just before the crash"
    again.frontend.invoke_task(task_id)
    assert again.frontend.get_task_result(task_id) == b"after the crash"
