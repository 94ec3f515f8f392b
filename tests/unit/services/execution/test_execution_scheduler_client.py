"""The execution service's scheduler client: requests it builds and answers it reads (fake Peer)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from cloister._proto import cloister_pb2 as cpb
from cloister.model.executors import ExecutorInfo
from cloister.model.tasks import StagedTask, TaskOutputs, TaskResult
from cloister.services.execution.scheduler_client import SchedulerClient, UnreadableStagedTaskError

INFO = ExecutorInfo(str(uuid.uuid4()), ("builtin",), ("gpu",), 4)


class FakePeer:
    def __init__(self, response: Any) -> None:
        self.response = response
        self.calls: list[tuple[str, Any, float | None]] = []

    async def call(self, stub: type, method: str, request: Any, *, metadata: Any = None, timeout: float | None = None):
        self.calls.append((method, request, timeout))
        return self.response


def staged() -> StagedTask:
    return StagedTask(
        uuid.uuid4(), uuid.uuid4(), "u", "builtin", "builtin", "builtin-echo", {"message": "m"}, b"", {}, {}
    )


def test_pull_task_wait_reads_the_staged_task_or_none() -> None:
    task = staged()
    peer = FakePeer(cpb.PullTaskWaitResponse(staged_task=json.dumps(task.to_json()).encode()))
    assert asyncio.run(SchedulerClient(peer).pull_task_wait(INFO, 30)) == task  # type: ignore[arg-type]
    method, request, timeout = peer.calls[0]
    assert method == "PullTaskWait" and request.timeout_ms == 30_000 and timeout is not None and timeout > 30
    assert list(request.executor.executors) == ["builtin"] and request.executor.slots == 4
    empty = FakePeer(cpb.PullTaskWaitResponse())
    assert asyncio.run(SchedulerClient(empty).pull_task_wait(INFO, 1)) is None  # type: ignore[arg-type]


def test_an_unreadable_staged_task_names_its_task_when_it_can() -> None:
    task_id = uuid.uuid4()
    peer = FakePeer(cpb.PullTaskWaitResponse(staged_task=json.dumps({"task_id": str(task_id)}).encode()))
    with pytest.raises(UnreadableStagedTaskError) as error:
        asyncio.run(SchedulerClient(peer).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert error.value.task_id == task_id
    garbage = FakePeer(cpb.PullTaskWaitResponse(staged_task=b"not json"))
    with pytest.raises(UnreadableStagedTaskError) as error:
        asyncio.run(SchedulerClient(garbage).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert error.value.task_id is None


def test_confirm_task_names_the_executor_and_the_task() -> None:
    peer = FakePeer(None)
    task_id = uuid.uuid4()
    asyncio.run(SchedulerClient(peer).confirm_task(INFO, task_id))  # type: ignore[arg-type]
    method, request, _ = peer.calls[0]
    assert method == "ConfirmTask" and request.task_id == str(task_id)
    assert request.executor.executor_id == INFO.executor_id


def test_heartbeat_sends_running_ids_and_ignores_junk_answers() -> None:
    cancel = uuid.uuid4()
    peer = FakePeer(cpb.ExecutorHeartbeatResponse(cancel_task_ids=[str(cancel), "junk"]))
    running = [uuid.uuid4()]
    assert asyncio.run(SchedulerClient(peer).executor_heartbeat(INFO, running, 1.5)) == [cancel]  # type: ignore[arg-type]
    _, request, _ = peer.calls[0]
    assert list(request.running_task_ids) == [str(running[0])] and request.wait_ms == 1500


def test_update_task_result_sends_a_bare_uuid_and_the_result() -> None:
    peer = FakePeer(None)
    task_id = uuid.uuid4()
    result = TaskResult.ok(TaskOutputs(b"r", {}, ("line",)))
    asyncio.run(SchedulerClient(peer).update_task_result(task_id, result))  # type: ignore[arg-type]
    method, request, _ = peer.calls[0]
    assert method == "UpdateTaskResult" and request.task_id == str(task_id)
    assert request.result.Ok.return_value == b"r" and list(request.result.Ok.log) == ["line"]
