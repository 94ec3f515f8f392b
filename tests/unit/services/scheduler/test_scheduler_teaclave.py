"""Teaclave's executor RPCs and result recording (reference §10.3), over fake storage."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from async_helpers import run, until
from scheduler_fakes import FakeStorage, cancel, engine_storage, make_task, pytest_generate_tests  # noqa: F401 - the fixture, the hook

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_common_pb2 as common
from cloister._proto import teaclave_scheduler_service_pb2 as spb
from cloister.config import SchedulerSettings
from cloister.errors import FailedOperationError, MalformedRequestError, NotFoundError, UnimplementedError
from cloister.model.files import OutputFile
from cloister.model.tasks import TaskOutputs, TaskResult, TaskState, TaskStatus
from cloister.services.scheduler.dispatcher import Scheduler
from cloister.services.scheduler.results import TaskResults
from cloister.services.scheduler.servicer import SchedulerServicer, TeaclaveSchedulerServicer
from cloister.services.scheduler.teaclave import ExecutorCommand, TeaclaveExecutors

TAG = bytes(range(16))


async def started(storage: FakeStorage) -> tuple[Scheduler, TeaclaveExecutors, TaskResults]:
    scheduler = Scheduler(storage, SchedulerSettings(), monitor_interval=3600)
    await scheduler.start()
    return scheduler, TeaclaveExecutors(scheduler), TaskResults(storage, scheduler.state)


def test_heartbeat_needs_a_uuid_and_announces_pending_tasks(storage: FakeStorage) -> None:
    async def body() -> None:
        scheduler, teaclave, _ = await started(storage)
        with pytest.raises(MalformedRequestError):
            await teaclave.heartbeat("not-a-uuid", executing=False)
        me = str(uuid.uuid4())
        assert await teaclave.heartbeat(me, executing=False) is ExecutorCommand.NO_ACTION
        make_task(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        assert await teaclave.heartbeat(me, executing=False) is ExecutorCommand.NEW_TASK
        await scheduler.stop()

    run(body)


def test_pull_task_parses_the_executor_id_before_taking_a_task(storage: FakeStorage) -> None:
    async def body() -> None:
        scheduler, teaclave, _ = await started(storage)
        with pytest.raises(FailedOperationError) as empty:
            await teaclave.pull_task(str(uuid.uuid4()))
        assert empty.value.message == "task queue is empty"
        make_task(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        with pytest.raises(MalformedRequestError):
            await teaclave.pull_task("bad")
        assert len(scheduler.state.pending) == 1
        await scheduler.stop()

    run(body)


def test_pull_then_update_status_then_result(storage: FakeStorage) -> None:
    async def body() -> None:
        task, staged = make_task(storage)
        scheduler, teaclave, results = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        assert await teaclave.pull_task(str(uuid.uuid4())) == staged
        assert storage.task(task.task_id).status is TaskStatus.STAGED  # Running only once reported
        await results.update_task_status(str(task.task_id))
        assert storage.task(task.task_id).status is TaskStatus.RUNNING
        with pytest.raises(MalformedRequestError, match="Cannot restore to Run from saved state"):
            await results.update_task_status(str(task.task_id))
        status = await results.update_task_result(str(task.task_id), TaskResult.ok(TaskOutputs(b"return value")))
        assert status is TaskStatus.FINISHED
        assert storage.task(task.task_id).result.outputs == TaskOutputs(b"return value")
        assert task.task_id not in scheduler.state.assignments
        with pytest.raises(MalformedRequestError, match="Cannot restore to Finish from saved state"):
            await results.update_task_result(str(task.task_id), TaskResult.err("late"))
        await scheduler.stop()

    run(body)


def test_a_cancelled_task_stops_its_executing_teaclave_executor(storage: FakeStorage) -> None:
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler, teaclave, results = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        me = str(uuid.uuid4())
        await teaclave.pull_task(me)
        await results.update_task_status(str(task.task_id))
        assert await teaclave.heartbeat(me, executing=True) is ExecutorCommand.NO_ACTION
        cancel(storage, task)
        await until(lambda: storage.task(task.task_id).status is TaskStatus.CANCELED)
        # Storage shows the change as soon as it commits; the scheduler acts on it after its await.
        await until(lambda: bool(scheduler.state.executors[me].cancels))
        assert await teaclave.heartbeat(me, executing=True) is ExecutorCommand.STOP
        assert await teaclave.heartbeat(me, executing=True) is ExecutorCommand.NO_ACTION
        await scheduler.stop()

    run(body)


async def _running_task(storage: FakeStorage, scheduler: Scheduler, outputs: tuple[str, ...]) -> TaskState:
    task, _ = make_task(storage, outputs=outputs)
    await until(lambda: task.task_id in scheduler.state.pending)
    await TeaclaveExecutors(scheduler).pull_task(str(uuid.uuid4()))
    await TaskResults(storage, scheduler.state).update_task_status(str(task.task_id))
    return task


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_an_ok_result_sets_each_output_cmac_once(storage: FakeStorage) -> None:
    async def body() -> None:
        scheduler, _, results = await started(storage)
        task = await _running_task(storage, scheduler, ("out",))
        output = task.assigned_outputs["out"]
        commits = len(storage.commits)
        result = TaskResult.ok(TaskOutputs(b"done", {"out": TAG}, ("line",)))
        assert await results.update_task_result(str(task.task_id), result) is TaskStatus.FINISHED
        assert len(storage.commits) == commits + 1  # one atomic commit
        stored = storage.task(task.task_id)
        assert stored.assigned_outputs["out"].cmac == TAG
        assert OutputFile.from_json(storage.json(output.external_id.encode())).cmac == TAG  # type: ignore[arg-type]
        assert f"scheduler-assignment-{task.task_id}".encode() not in storage.kv

        # A second task writing the same output file may not overwrite its cmac.
        again = await _running_task(storage, scheduler, ("out",))
        record = storage.task(again.task_id)
        shared = {"out": output}  # the task's copy has no cmac; the standalone record has one
        storage.put_json(
            record.key, {**record.to_json(), "assigned_outputs": {"inner": {k: v.to_json() for k, v in shared.items()}}}
        )
        with pytest.raises(FailedOperationError) as refused:
            await results.update_task_result(str(again.task_id), result)
        assert refused.value.message == "Cannot overwrite output file cmac"
        assert storage.task(again.task_id).status is TaskStatus.RUNNING
        await scheduler.stop()

    run(body)


def test_an_unknown_output_name_fails_the_update(storage: FakeStorage) -> None:
    async def body() -> None:
        scheduler, _, results = await started(storage)
        task = await _running_task(storage, scheduler, ())
        result = TaskResult.ok(TaskOutputs(b"", {"nope": TAG}))
        with pytest.raises(FailedOperationError) as missing:
            await results.update_task_result(str(task.task_id), result)
        assert missing.value.message == 'Upadate_cmac: file not found. "nope"'
        await scheduler.stop()

    run(body)


def test_an_err_result_ends_the_task_as_failed(storage: FakeStorage) -> None:
    async def body() -> None:
        scheduler, _, results = await started(storage)
        task = await _running_task(storage, scheduler, ())
        status = await results.update_task_result(str(task.task_id), TaskResult.err("Cannot deserialize arguments"))
        assert status is TaskStatus.FAILED
        stored = storage.task(task.task_id)
        assert stored.status is TaskStatus.FAILED and stored.result.failure == "Cannot deserialize arguments"
        await scheduler.stop()

    run(body)


def test_publish_task_is_handed_out_from_memory(storage: FakeStorage) -> None:
    async def body() -> None:
        scheduler, teaclave, _ = await started(storage)
        _, staged = make_task(storage, enqueue=False)
        teaclave.publish_task(json.dumps(staged.to_json()).encode())
        with pytest.raises(MalformedRequestError):
            teaclave.publish_task(b"{}")
        assert await teaclave.pull_task(str(uuid.uuid4())) == staged
        await scheduler.stop()

    run(body)


def test_servicers_decode_and_encode(storage: FakeStorage) -> None:
    async def body() -> None:
        scheduler, _, results = await started(storage)
        cloister = SchedulerServicer(scheduler, results)
        teaclave = TeaclaveSchedulerServicer(scheduler, results)
        with pytest.raises(UnimplementedError):
            await teaclave.Subscribe(None, None)  # type: ignore[arg-type]

        task, staged = make_task(storage)
        info = cpb.ExecutorInfo(executor_id=str(uuid.uuid4()), executors=["builtin"], slots=1)
        waiting = SimpleNamespace(time_remaining=lambda: 15.0)  # the call's deadline, as gRPC tells it
        response = await cloister.PullTaskWait(cpb.PullTaskWaitRequest(executor=info, timeout_ms=5000), waiting)  # type: ignore[arg-type]
        assert json.loads(response.staged_task) == staged.to_json()
        empty = await cloister.PullTaskWait(cpb.PullTaskWaitRequest(executor=info, timeout_ms=10), waiting)  # type: ignore[arg-type]
        assert empty.staged_task == b""
        with pytest.raises(MalformedRequestError, match="invalid task id"):
            await cloister.ConfirmTask(cpb.ConfirmTaskRequest(executor=info, task_id="junk"), None)
        with pytest.raises(NotFoundError):
            await cloister.ConfirmTask(cpb.ConfirmTaskRequest(executor=info, task_id=str(uuid.uuid4())), None)
        await cloister.ConfirmTask(cpb.ConfirmTaskRequest(executor=info, task_id=str(task.task_id)), None)
        assert scheduler.state.assignments[task.task_id].offer is None
        beat = await cloister.ExecutorHeartbeat(
            cpb.ExecutorHeartbeatRequest(executor=info, running_task_ids=[str(task.task_id), "junk"], wait_ms=10), None
        )
        assert list(beat.cancel_task_ids) == []

        request = spb.UpdateTaskResultRequest(
            task_id=str(task.task_id), result=common.TaskResult(Err=common.TaskFailure(reason="boom"))
        )
        await teaclave.UpdateTaskResult(request, None)
        assert storage.task(task.task_id).result.failure == "boom"
        heartbeat = await teaclave.Heartbeat(spb.HeartbeatRequest(executor_id=str(uuid.uuid4())), None)
        assert heartbeat.command == common.NoAction
        await scheduler.stop()

    run(body)
