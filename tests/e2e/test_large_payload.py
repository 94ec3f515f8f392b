"""Function payloads as bytes in their own record: a 50 MiB one registers, runs and reads back,
crosses to the execution service once, and a replaced one is never run by an older task."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Session, admin

from cloister.errors import TaskFailedError
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform, start_platform

MIB = 1024 * 1024
LARGE_MESSAGES = {
    "CLOISTER_RPC__MAX_MESSAGE_BYTES": str(64 * MIB),
    "CLOISTER_RPC__INTERNAL_MAX_MESSAGE_BYTES": str(80 * MIB),
    # One slot, one long poll at a time: each poll lists what the service holds when it starts, so
    # with several slots a poll already waiting may still be answered with the payload.
    "CLOISTER_EXECUTION__SLOTS": "1",
}


def python_function(result: str, size: int) -> bytes:
    """A function returning ``result``, padded with a comment to ``size`` bytes."""
    code = f"def entrypoint(argv):\n    return {result!r} + argv[1]\n#".encode()
    return code + b"p" * (size - len(code) - 1) + b"\n"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with start_platform(tmp_path_factory.mktemp("large-payload"), env=LARGE_MESSAGES) as running:
        yield running


@pytest.fixture
def root(platform: RunningPlatform) -> Iterator[Session]:
    session = admin(platform)
    yield session
    session.close()


def _run(session: Session, function_id: str, message: str) -> bytes:
    task_id = session.frontend.create_task(function_id, {"message": message}, "python")
    session.frontend.invoke_task(task_id)
    return session.frontend.get_task_result(task_id)


def _received(platform: RunningPlatform, payload: bytes) -> int:
    """How often the execution service logged receiving ``payload`` from the scheduler."""
    digest = hashlib.sha256(payload).hexdigest()[:16]
    log = Path(platform.state_dir, "logs", "execution.log").read_text()
    return sum(1 for line in log.splitlines() if f"payload {digest} received" in line)


def test_a_50_mib_payload_registers_runs_twice_and_reads_back(platform: RunningPlatform, root: Session) -> None:
    payload = python_function("large ", 50 * MIB)
    function_id = root.frontend.register_function(
        "large", "50 MiB", "python", payload=payload, arguments=[FunctionArgument("message")]
    )
    assert _run(root, function_id, "one") == b"large one"
    assert _run(root, function_id, "two") == b"large two"
    assert _run(root, function_id, "three") == b"large three"
    assert base64.b64decode(root.frontend.get_function(function_id)["payload"]) == payload
    assert _received(platform, payload) == 1  # the later tasks' payload came from the cache


def test_an_updated_payload_runs_as_updated(platform: RunningPlatform, root: Session) -> None:
    first, second = python_function("first ", 2 * MIB), python_function("second ", 2 * MIB)
    function_id = root.frontend.register_function(
        "updated", "", "python", payload=first, arguments=[FunctionArgument("message")]
    )
    assert _run(root, function_id, "a") == b"first a"
    root.frontend.update_function(
        function_id, "updated", "", "python", payload=second, arguments=[FunctionArgument("message")]
    )
    assert _run(root, function_id, "b") == b"second b"
    assert base64.b64decode(root.frontend.get_function(function_id)["payload"]) == second


def test_a_task_staged_before_its_payload_changed_fails_rather_than_run_other_code(
    platform: RunningPlatform, root: Session
) -> None:
    updated = root.frontend.register_function(
        "changed", "", "python", payload=python_function("old ", 4096), arguments=[FunctionArgument("message")]
    )
    deleted = root.frontend.register_function(
        "deleted", "", "python", payload=python_function("gone ", 4096), arguments=[FunctionArgument("message")]
    )
    platform.platform.stop_service("execution")  # the tasks stay staged meanwhile
    try:
        tasks = []
        for function_id in (updated, deleted):
            task_id = root.frontend.create_task(function_id, {"message": "x"}, "python")
            root.frontend.invoke_task(task_id)
            tasks.append(task_id)
        new = python_function("new ", 4096)
        root.frontend.update_function(
            updated, "changed", "", "python", payload=new, arguments=[FunctionArgument("message")]
        )
        root.frontend.delete_function(deleted)
    finally:
        platform.platform.start_service("execution")
    for task_id in tasks:
        with pytest.raises(TaskFailedError, match="the function's payload is no longer stored"):
            root.frontend.get_task_result(task_id)
    assert _run(root, updated, "y") == b"new y"
