"""Execution services announce what they can run; the scheduler places tasks accordingly."""

from __future__ import annotations

import time
import uuid

import pytest
from conftest import Session, admin
from test_executors import ECHO

from cloister.errors import TaskNotReadyError
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform

WAT_ADD = (
    b'(module (memory (export "memory") 1) (func (export "entrypoint") (param i32 i32) (result i32) i32.const 42))'
)


def _ran_on(platform: RunningPlatform, task_id: str) -> set[str]:
    """The execution processes whose logs say they ran the task."""
    bare = task_id.removeprefix("task-")
    logs = platform.state_dir / "logs"
    return {p.stem for p in logs.glob("execution*.log") if f"running task {bare}" in p.read_text()}


def _invoke(session: Session, function_id: str, arguments: dict, executor: str) -> str:
    task_id = session.frontend.create_task(function_id, arguments, executor)
    session.frontend.invoke_task(task_id)
    return task_id


def test_tasks_go_where_they_can_run_and_wait_visibly_otherwise(own_platform: RunningPlatform) -> None:
    platform = own_platform.platform
    platform.stop_service("execution")
    platform.start_service("execution", instance="plain", extra_env={"CLOISTER_EXECUTION__EXECUTORS": "builtin,python"})
    gpu = {"CLOISTER_EXECUTION__LABELS": "gpu"}
    platform.start_service("execution", instance="gpu", extra_env=gpu)
    root = admin(own_platform)

    wasm = root.frontend.register_function("answer", "wasm", "wasm", payload=WAT_ADD)
    on_gpu = root.frontend.register_function(
        "needs-gpu", "py", "python", payload=ECHO, arguments=[FunctionArgument("message")]
    )
    root.frontend.set_function_requirements(on_gpu, ["gpu"])
    for _ in range(3):
        task_id = _invoke(root, wasm, {}, "wasm")
        assert root.frontend.get_task_result(task_id) == b"42"
        assert _ran_on(own_platform, task_id) == {"execution-gpu"}
        task_id = _invoke(root, on_gpu, {"message": "labelled"}, "python")
        assert root.frontend.get_task_result(task_id) == b"labelled"
        assert _ran_on(own_platform, task_id) == {"execution-gpu"}

    # Without the only service that has wasm, a wasm task waits and says why, then runs.
    platform.stop_service("execution-gpu")
    time.sleep(0.2)
    waiting = _invoke(root, wasm, {}, "wasm")
    deadline = time.monotonic() + 30
    reason = ""
    while time.monotonic() < deadline and not reason:
        task = root.frontend.wait_task(waiting, 1)
        assert task.status == 3  # still Staged
        reason = task.result.Err.reason if task.result.HasField("Err") else ""
    assert "no live execution service can run it" in reason and "wasm" in reason
    with pytest.raises(TaskNotReadyError, match="no live execution service"):
        root.frontend.get_task_result(waiting)  # without a timeout it says why instead of waiting forever
    platform.start_service("execution", instance="gpu", extra_env=gpu)
    assert root.frontend.get_task_result(waiting, timeout=60) == b"42"  # with one, it waits for the service


def test_two_execution_services_share_a_burst_without_running_a_task_twice(own_platform: RunningPlatform) -> None:
    own_platform.platform.start_service("execution", instance="second")
    root = admin(own_platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    ids = [_invoke(root, function_id, {"message": str(uuid.uuid4())}, "builtin") for _ in range(40)]
    for task_id in ids:
        root.frontend.get_task_result(task_id)
    where = {task_id: _ran_on(own_platform, task_id) for task_id in ids}
    assert all(len(services) == 1 for services in where.values())  # each ran exactly once
    assert set().union(*where.values()) == {"execution", "execution-second"}  # and both took part
