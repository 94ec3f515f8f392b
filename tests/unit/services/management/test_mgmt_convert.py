"""Protobuf conversion of task results and task views (rpc/convert), and the key locks."""

from __future__ import annotations

import asyncio
import uuid

from cloister._proto import teaclave_common_pb2 as common_pb
from cloister.model.files import FileCrypto, InputFile
from cloister.model.ids import ExternalId
from cloister.model.tasks import (
    Actor,
    TaskOutputs,
    TaskResult,
    TaskState,
    TaskStatus,
    transition,
    with_waiting_reason,
)
from cloister.rpc.convert.tasks import task_result_from_proto, task_result_to_proto, task_to_get_response
from cloister.services.management.locks import KeyLocks


def test_task_result_round_trip():
    results = [
        TaskResult(),
        TaskResult.err("Task canceled"),
        TaskResult.ok(TaskOutputs(b"summary", {"out": bytes(range(16))}, ("line 1", "line 2"))),
    ]
    for result in results:
        assert task_result_from_proto(task_result_to_proto(result)) == result
    assert task_result_to_proto(TaskResult()).WhichOneof("result") is None
    assert task_result_to_proto(TaskResult.err("x")).Err.reason == "x"


def test_task_to_get_response():
    file = InputFile("https://x/a", bytes(16), FileCrypto("raw"), frozenset({"b", "a"}), uuid.uuid4())
    task = TaskState(
        task_id=uuid.uuid4(),
        creator="a",
        function_id=ExternalId.new("function"),
        function_arguments={"z": 1, "a": "é"},
        executor="builtin",
        inputs_ownership={"in": frozenset({"b", "a"})},
        outputs_ownership={},
        function_owner="fo",
        participants=frozenset({"b", "a"}),
        approved_users=frozenset({"a"}),
        assigned_inputs={"in": file},
        status=TaskStatus.APPROVED,
    )
    response = task_to_get_response(task)
    assert response.task_id == f"task-{task.task_id}"
    assert response.function_id == str(task.function_id)
    assert response.function_arguments == '{"a":"é","z":1}'
    assert [(o.data_name, list(o.uids)) for o in response.inputs_ownership] == [("in", ["a", "b"])]
    assert list(response.participants) == ["a", "b"] and list(response.approved_users) == ["a"]
    assert [(m.data_name, m.data_id) for m in response.assigned_inputs] == [("in", file.external_id)]
    assert response.status == common_pb.Approved
    assert response.result.WhichOneof("result") is None


def test_a_waiting_reason_reaches_teaclave_clients_as_a_staged_tasks_err_only():
    task = TaskState(
        task_id=uuid.uuid4(),
        creator="a",
        function_id=ExternalId.new("function"),
        function_arguments={},
        executor="builtin",
        inputs_ownership={},
        outputs_ownership={},
        function_owner="a",
        participants=frozenset({"a"}),
        status=TaskStatus.STAGED,
    )
    assert task_to_get_response(task).result.WhichOneof("result") is None
    reason = "waiting: no live execution service can run it (needs executor 'wasm')"
    waiting = with_waiting_reason(task, reason)
    response = task_to_get_response(waiting)
    assert response.status == common_pb.Staged and response.result.Err.reason == reason
    assert waiting.result == TaskResult()  # the record keeps it apart from the result
    running = transition(waiting, TaskStatus.RUNNING, by=Actor.SCHEDULER)
    assert task_to_get_response(running).result.WhichOneof("result") is None


def test_key_locks_serialize_and_clean_up():
    async def go():
        locks = KeyLocks()
        order: list[str] = []

        async def worker(name: str, *keys: bytes) -> None:
            async with locks.hold(*keys):
                order.append(f"{name}+")
                await asyncio.sleep(0.01)
                order.append(f"{name}-")

        await asyncio.gather(worker("a", b"k1", b"k2"), worker("b", b"k2", b"k1"), worker("c", b"k3"))
        assert order.index("a-") < order.index("b+") or order.index("b-") < order.index("a+")
        assert len(locks) == 0

        blocked = asyncio.create_task(worker("d", b"k1"))
        async with locks.hold(b"k1"):
            await asyncio.sleep(0)
            blocked.cancel()
        await asyncio.gather(blocked, return_exceptions=True)
        assert len(locks) == 0

    asyncio.run(go())
