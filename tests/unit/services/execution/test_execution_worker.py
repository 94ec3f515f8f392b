"""The execution service's runner and worker loops, against a fake scheduler with the same methods."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

import pytest
from async_helpers import run, until

from cloister.errors import (
    DeadlineExceededError,
    DiskFullError,
    MalformedRequestError,
    NotFoundError,
    UnavailableError,
    error_for_status,
)
from cloister.executors import BuiltinExecutor, Executor, TaskIO
from cloister.model.executors import ExecutorInfo
from cloister.model.tasks import StagedTask, TaskOutputs, TaskResult
from cloister.services.execution.runner import TaskRunner
from cloister.services.execution.worker import ExecutionWorker


def staged(name: str = "builtin-echo", executor_type: str = "builtin", executor: str = "builtin", **arguments: object):
    return StagedTask(uuid.uuid4(), uuid.uuid4(), "u", executor, executor_type, name, dict(arguments), b"", {}, {})


class FakeScheduler:
    """Hands out queued tasks, answers heartbeats with queued cancellations, records results."""

    def __init__(self) -> None:
        self.tasks: asyncio.Queue[StagedTask] = asyncio.Queue()
        self.cancels: asyncio.Queue[list[uuid.UUID]] = asyncio.Queue()
        self.results: dict[uuid.UUID, TaskResult] = {}
        self.report_calls = 0
        self.report_errors: list[Exception] = []
        self.heartbeat_errors: list[Exception] = []
        self.heartbeats: list[tuple[uuid.UUID, ...]] = []
        self.confirm_errors: list[Exception] = []
        self.confirm_calls: list[uuid.UUID] = []

    async def confirm_task(self, info: ExecutorInfo, task_id: uuid.UUID) -> None:
        self.confirm_calls.append(task_id)
        if self.confirm_errors:
            raise self.confirm_errors.pop(0)

    async def pull_task_wait(self, info: ExecutorInfo, timeout: float) -> StagedTask | None:
        try:
            return await asyncio.wait_for(self.tasks.get(), timeout)
        except TimeoutError:
            return None

    async def executor_heartbeat(
        self, info: ExecutorInfo, running: Iterable[uuid.UUID], wait: float
    ) -> list[uuid.UUID]:
        if self.heartbeat_errors:
            raise self.heartbeat_errors.pop(0)
        self.heartbeats.append(tuple(running))
        try:
            return await asyncio.wait_for(self.cancels.get(), wait)
        except TimeoutError:
            return []

    async def update_task_result(self, task_id: uuid.UUID, result: TaskResult) -> None:
        self.report_calls += 1
        if self.report_errors:
            raise self.report_errors.pop(0)
        self.results[task_id] = result


class GatedExecutor(Executor):
    """Runs until its task's gate opens; remembers which tasks were cancelled."""

    kind = "builtin"
    executor_type = "builtin"
    executor = "builtin"

    def __init__(self) -> None:
        self.gates: dict[uuid.UUID, asyncio.Event] = {}
        self.started: set[uuid.UUID] = set()
        self.cancelled: set[uuid.UUID] = set()

    def prepare(self, task: StagedTask) -> None:
        pass

    async def run(self, task: StagedTask, io: TaskIO) -> TaskOutputs:
        self.started.add(task.task_id)
        try:
            await self.gates.setdefault(task.task_id, asyncio.Event()).wait()
        except asyncio.CancelledError:
            self.cancelled.add(task.task_id)
            raise
        return TaskOutputs(return_value=str(task.task_id).encode())


def worker(scheduler: FakeScheduler, executor: Executor, slots: int = 2) -> ExecutionWorker:
    info = ExecutorInfo(str(uuid.uuid4()), ("builtin",), slots=slots)
    return ExecutionWorker(
        scheduler, TaskRunner({"builtin": executor}), info, slots=slots, heartbeat_seconds=5, retry_limit=0.01
    )


def test_the_runner_turns_outcomes_into_results() -> None:
    async def body() -> None:
        runner = TaskRunner({"builtin": BuiltinExecutor()})
        ok = await runner.run(staged(message="Hello, Teaclave Tests!", save_log="true"))
        assert ok.outputs is not None and ok.outputs.return_value == b"Hello, Teaclave Tests!"
        assert ok.outputs.log == ("[INFO teaclave_function::echo] Hello, Teaclave Tests!",)
        assert (await runner.run(staged(executor="mesapy"))).failure == "function not available: (Builtin, MesaPy)"
        assert (await runner.run(staged("builtin-nope"))).failure == "Function not found."
        assert (await runner.run(staged())).failure == "Cannot deserialize arguments"

    run(body)


def test_an_unexpected_error_fails_only_that_task_with_an_incident() -> None:
    class Broken(GatedExecutor):
        async def run(self, task: StagedTask, io: TaskIO) -> TaskOutputs:
            raise RuntimeError("secret detail")

    async def body() -> None:
        result = await TaskRunner({"builtin": Broken()}).run(staged())
        assert result.failure is not None and "incident" in result.failure
        assert "secret detail" not in result.failure

    run(body)


def test_a_cancelled_task_stops_while_another_keeps_running() -> None:
    async def body() -> None:
        scheduler, executor = FakeScheduler(), GatedExecutor()
        service = worker(scheduler, executor)
        first, second = staged(), staged()
        await scheduler.tasks.put(first)
        await scheduler.tasks.put(second)
        service.start()
        await until(lambda: executor.started == {first.task_id, second.task_id})
        await scheduler.cancels.put([first.task_id])
        await until(lambda: first.task_id in executor.cancelled)
        await until(lambda: first.task_id not in service.running_task_ids)
        assert second.task_id in service.running_task_ids and second.task_id not in executor.cancelled
        executor.gates[second.task_id].set()
        await until(lambda: second.task_id in scheduler.results)
        assert scheduler.results[second.task_id].outputs == TaskOutputs(return_value=str(second.task_id).encode())
        assert first.task_id not in scheduler.results  # the scheduler already marked it Canceled
        await service.stop(grace=1)

    run(body)


def test_a_task_is_run_only_after_the_scheduler_took_its_confirmation() -> None:
    async def body() -> None:
        scheduler, executor = FakeScheduler(), GatedExecutor()
        # The scheduler is unreachable for a while, then answers: the task runs, confirmed once.
        scheduler.confirm_errors = [UnavailableError("down"), DeadlineExceededError("slow")]
        service = worker(scheduler, executor, slots=1)
        task = staged()
        await scheduler.tasks.put(task)
        service.start()
        await until(lambda: task.task_id in executor.started)
        assert scheduler.confirm_calls == [task.task_id] * 3 and scheduler.confirm_errors == []
        executor.gates[task.task_id].set()
        await until(lambda: task.task_id in scheduler.results)
        await service.stop(grace=1)

    run(body)


def test_a_task_whose_confirmation_is_refused_is_not_run() -> None:
    async def body() -> None:
        scheduler, executor = FakeScheduler(), GatedExecutor()
        given_back, next_one = staged(), staged()
        scheduler.confirm_errors = [NotFoundError(f"task {given_back.task_id} is not assigned to this service")]
        service = worker(scheduler, executor, slots=1)
        await scheduler.tasks.put(given_back)
        await scheduler.tasks.put(next_one)
        service.start()
        await until(lambda: next_one.task_id in executor.started)
        assert given_back.task_id not in executor.started
        assert given_back.task_id not in service.running_task_ids
        executor.gates[next_one.task_id].set()
        await until(lambda: next_one.task_id in scheduler.results)
        assert given_back.task_id not in scheduler.results
        await service.stop(grace=1)

    run(body)


def test_heartbeats_list_running_tasks_and_survive_an_unreachable_scheduler() -> None:
    async def body() -> None:
        scheduler, executor = FakeScheduler(), GatedExecutor()
        scheduler.heartbeat_errors = [UnavailableError("down")] * 3
        service = worker(scheduler, executor, slots=1)
        task = staged()
        await scheduler.tasks.put(task)
        service.start()
        await until(lambda: any(task.task_id in beat for beat in scheduler.heartbeats))
        assert scheduler.heartbeat_errors == []
        await scheduler.cancels.put([uuid.uuid4()])  # unknown ids are ignored
        executor.gates.setdefault(task.task_id, asyncio.Event()).set()
        await until(lambda: task.task_id in scheduler.results)
        await service.stop(grace=1)

    run(body)


@pytest.mark.parametrize(
    "error",
    [
        UnavailableError("the scheduler service is unavailable; try again shortly"),
        error_for_status(8, DiskFullError.of("storage").message),  # storage out of space, as it arrives
    ],
    ids=["scheduler unavailable", "storage out of disk space"],
)
def test_results_are_retried_through_an_outage(error: Exception) -> None:
    async def body() -> None:
        scheduler = FakeScheduler()
        scheduler.report_errors = [error] * 30  # an outage longer than any fixed number of tries
        service = worker(scheduler, BuiltinExecutor(), slots=1)
        task = staged(message="hi")
        await scheduler.tasks.put(task)
        service.start()
        await until(lambda: task.task_id in service.running_task_ids)
        await until(lambda: task.task_id in scheduler.results)
        assert scheduler.report_calls == 31
        await service.stop(grace=1)

    run(body)


def test_disk_full_arrives_over_the_wire_as_its_own_error() -> None:
    assert isinstance(error_for_status(8, DiskFullError.of("storage").message), DiskFullError)


def test_a_refused_result_is_not_retried() -> None:
    async def body() -> None:
        scheduler = FakeScheduler()
        scheduler.report_errors = [MalformedRequestError("Cannot restore to Finish from saved state")]
        service = worker(scheduler, BuiltinExecutor(), slots=1)
        await scheduler.tasks.put(staged(message="hi"))
        service.start()
        await until(lambda: scheduler.report_calls == 1)
        await asyncio.sleep(0.05)
        assert scheduler.report_calls == 1
        await service.stop(grace=1)

    run(body)


def test_stopping_fails_tasks_that_outlive_the_grace_period() -> None:
    async def body() -> None:
        scheduler, executor = FakeScheduler(), GatedExecutor()
        service = worker(scheduler, executor, slots=1)
        task = staged()
        await scheduler.tasks.put(task)
        service.start()
        await until(lambda: task.task_id in executor.started)
        await service.stop(grace=0.05)
        failure = scheduler.results[task.task_id].failure
        assert failure is not None and "stopped before the task finished" in failure

    run(body)


def test_a_result_whose_receipt_the_scheduler_refuses_is_reported_without_it() -> None:
    """The function ran: a receipt the scheduler will not keep (too large, say) must not lose its result."""

    class ReceiptedRunner(TaskRunner):
        async def run_with_receipt(self, task: StagedTask) -> tuple[TaskResult, str | None]:
            return TaskResult.ok(TaskOutputs(return_value=b"done")), "header.payload.signature"

    class RefusingScheduler(FakeScheduler):
        receipts_refused = 0

        async def report_task_result(self, task_id: uuid.UUID, result: TaskResult, receipt: str) -> None:
            self.receipts_refused += 1
            raise error_for_status(13, "a receipt is a compact JWS of at most 65536 characters")

    async def body() -> None:
        scheduler = RefusingScheduler()
        info = ExecutorInfo(str(uuid.uuid4()), ("builtin",), slots=1)
        runner = ReceiptedRunner({"builtin": GatedExecutor()})
        service = ExecutionWorker(scheduler, runner, info, slots=1, heartbeat_seconds=5, retry_limit=0.01)
        task = staged()
        await scheduler.tasks.put(task)
        service.start()
        await until(lambda: task.task_id in scheduler.results)
        assert scheduler.receipts_refused == 1
        assert scheduler.results[task.task_id].outputs == TaskOutputs(return_value=b"done")
        await service.stop(grace=1)

    run(body)
