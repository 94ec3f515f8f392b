"""The execution service's scheduler client: requests it builds and answers it reads (fake Peer)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from typing import Any

import pytest

from cloister._proto import cloister_pb2 as cpb
from cloister.model.executors import ExecutorInfo
from cloister.model.functions import payload_sha256
from cloister.model.tasks import StagedTask, TaskOutputs, TaskResult
from cloister.services.execution.payloads import PayloadCache
from cloister.services.execution.scheduler_client import SchedulerClient, UnreadableStagedTaskError

INFO = ExecutorInfo(str(uuid.uuid4()), ("builtin",), ("gpu",), 4)


class FakePeer:
    def __init__(self, response: Any) -> None:
        self.response = response
        self.calls: list[tuple[str, Any, float | None]] = []

    async def call(self, stub: type, method: str, request: Any, *, metadata: Any = None, timeout: float | None = None):
        self.calls.append((method, request, timeout))
        return self.response


def client(peer: Any, cache: PayloadCache | None = None) -> SchedulerClient:
    return SchedulerClient(peer, cache or PayloadCache(1 << 20))


def staged() -> StagedTask:
    return StagedTask(
        uuid.uuid4(), uuid.uuid4(), "u", "builtin", "builtin", "builtin-echo", {"message": "m"}, b"", {}, {}
    )


def test_pull_task_wait_reads_the_staged_task_or_none() -> None:
    task = staged()
    peer = FakePeer(cpb.PullTaskWaitResponse(staged_task=json.dumps(task.to_json()).encode()))
    assert asyncio.run(client(peer).pull_task_wait(INFO, 30)) == task  # type: ignore[arg-type]
    method, request, timeout = peer.calls[0]
    assert method == "PullTaskWait" and request.timeout_ms == 30_000 and timeout is not None and timeout > 30
    assert list(request.executor.executors) == ["builtin"] and request.executor.slots == 4
    empty = FakePeer(cpb.PullTaskWaitResponse())
    assert asyncio.run(client(empty).pull_task_wait(INFO, 1)) is None  # type: ignore[arg-type]


def test_an_unreadable_staged_task_names_its_task_when_it_can() -> None:
    task_id = uuid.uuid4()
    peer = FakePeer(cpb.PullTaskWaitResponse(staged_task=json.dumps({"task_id": str(task_id)}).encode()))
    with pytest.raises(UnreadableStagedTaskError) as error:
        asyncio.run(client(peer).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert error.value.task_id == task_id
    garbage = FakePeer(cpb.PullTaskWaitResponse(staged_task=b"not json"))
    with pytest.raises(UnreadableStagedTaskError) as error:
        asyncio.run(client(garbage).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert error.value.task_id is None


PAYLOAD = b"def entrypoint(argv):\n    return 'hi'\n"


def python_task() -> StagedTask:
    task = replace(staged(), executor="mesapy", executor_type="python", function_name="f")
    return replace(task, function_payload_sha256=payload_sha256(PAYLOAD))


def handed_out(task: StagedTask, payload: bytes) -> cpb.PullTaskWaitResponse:
    """As the scheduler answers: the JSON without the payload, the payload (or not) beside it."""
    return cpb.PullTaskWaitResponse(
        staged_task=json.dumps(task.to_json()).encode(),
        function_payload=payload,
        payload_sha256=task.function_payload_sha256,
    )


def test_a_payload_crosses_the_wire_once_then_comes_from_the_cache() -> None:
    cache = PayloadCache(1 << 20)
    first, second = python_task(), python_task()
    got = asyncio.run(client(FakePeer(handed_out(first, PAYLOAD)), cache).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert got is not None and got.function_payload == PAYLOAD and not got.payload_missing
    peer = FakePeer(handed_out(second, b""))
    got = asyncio.run(client(peer, cache).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert got is not None and got.task_id == second.task_id and got.function_payload == PAYLOAD
    assert list(peer.calls[0][1].cached_payloads) == [payload_sha256(PAYLOAD)]


def test_a_payload_that_is_not_the_one_named_is_refused_and_not_kept() -> None:
    cache = PayloadCache(1 << 20)
    task = python_task()
    with pytest.raises(UnreadableStagedTaskError) as error:
        asyncio.run(client(FakePeer(handed_out(task, b"evil")), cache).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert error.value.task_id == task.task_id and cache.size == 0
    assert cache.get(task.function_payload_sha256) is None


def test_a_payload_neither_handed_out_nor_held_fails_the_task_saying_why() -> None:
    task = python_task()
    with pytest.raises(UnreadableStagedTaskError) as error:
        asyncio.run(client(FakePeer(handed_out(task, b""))).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert error.value.task_id == task.task_id
    assert error.value.reason.startswith("the function's payload is no longer stored")


def test_a_builtin_needs_no_payload() -> None:
    task = staged()
    got = asyncio.run(client(FakePeer(handed_out(task, b""))).pull_task_wait(INFO, 1))  # type: ignore[arg-type]
    assert got == task


def test_confirm_task_names_the_executor_and_the_task() -> None:
    peer = FakePeer(None)
    task_id = uuid.uuid4()
    asyncio.run(client(peer).confirm_task(INFO, task_id))  # type: ignore[arg-type]
    method, request, _ = peer.calls[0]
    assert method == "ConfirmTask" and request.task_id == str(task_id)
    assert request.executor.executor_id == INFO.executor_id


def test_heartbeat_sends_running_ids_and_ignores_junk_answers() -> None:
    cancel = uuid.uuid4()
    peer = FakePeer(cpb.ExecutorHeartbeatResponse(cancel_task_ids=[str(cancel), "junk"]))
    running = [uuid.uuid4()]
    assert asyncio.run(client(peer).executor_heartbeat(INFO, running, 1.5)) == [cancel]  # type: ignore[arg-type]
    _, request, _ = peer.calls[0]
    assert list(request.running_task_ids) == [str(running[0])] and request.wait_ms == 1500


def test_update_task_result_sends_a_bare_uuid_and_the_result() -> None:
    peer = FakePeer(None)
    task_id = uuid.uuid4()
    result = TaskResult.ok(TaskOutputs(b"r", {}, ("line",)))
    asyncio.run(client(peer).update_task_result(task_id, result))  # type: ignore[arg-type]
    method, request, _ = peer.calls[0]
    assert method == "UpdateTaskResult" and request.task_id == str(task_id)
    assert request.result.Ok.return_value == b"r" and list(request.result.Ok.log) == ["line"]
