"""The lifecycle rules the scheduler owns (docs/tasks.md): ended is final, nothing runs twice, storage wins."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace

import pytest
from async_helpers import run, until
from scheduler_fakes import STAGED, FakeStorage, cancel, engine_storage, make_task, pytest_generate_tests  # noqa: F401 - the fixture, the hook

from cloister.attestation.receipts import MAX_RECEIPT_CHARS
from cloister.config import SchedulerSettings
from cloister.errors import ConflictError, InvalidArgumentError, MalformedRequestError
from cloister.model.executors import ExecutorInfo
from cloister.model.tasks import REASON_CANCELED_BY_USER, Actor, TaskOutputs, TaskResult, TaskStatus, transition
from cloister.services.scheduler.dispatcher import Scheduler
from cloister.services.scheduler.results import TaskResults
from cloister.storage.ops import Check, CheckValue, Op

TAG = bytes(range(16))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RacingStorage(FakeStorage):
    """Storage where someone else writes ``key`` just before the next conditional commit on it lands."""

    def __init__(self) -> None:
        super().__init__()
        self.race: tuple[bytes, bytes] | None = None
        self.conflicts = 0

    async def commit(self, ops: Sequence[Op]) -> dict[bytes, int]:
        if self.race is not None and any(isinstance(op, Check) and op.key == self.race[0] for op in ops):
            key, value = self.race
            self.race = None
            self.put_json(key, json.loads(value))
        try:
            return await super().commit(ops)
        except ConflictError:
            self.conflicts += 1
            raise


def executor() -> ExecutorInfo:
    return ExecutorInfo(str(uuid.uuid4()), frozenset({"builtin"}))


async def started(storage: FakeStorage, clock: Clock | None = None, timeout: float = 30.0) -> Scheduler:
    scheduler = Scheduler(
        storage, SchedulerSettings(executor_timeout_seconds=timeout), clock=clock or Clock(), monitor_interval=3600
    )
    await scheduler.start()
    return scheduler


def test_each_change_records_who_made_it(storage: FakeStorage) -> None:
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler = await started(storage)
        await scheduler.pull_task_wait(executor(), 5)
        assert storage.task(task.task_id).changed_by is Actor.SCHEDULER  # the hand-out
        await TaskResults(storage, scheduler.state).update_task_result(str(task.task_id), TaskResult.err("boom"))
        ended = storage.task(task.task_id)
        assert (ended.status, ended.changed_by) == (TaskStatus.FAILED, Actor.EXECUTOR)  # the function failed
        assert ended.changed_at is not None
        await scheduler.stop()

    run(body)


@pytest.mark.parametrize("how", ["cancelled", "executor lost"])
@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_result_for_a_task_that_ended_meanwhile_changes_nothing(storage: FakeStorage, how: str) -> None:
    async def body() -> None:
        clock = Clock()
        task, _ = make_task(storage, outputs=["out"])
        scheduler = await started(storage, clock, timeout=0.5)
        me = executor()
        await scheduler.pull_task_wait(me, 5)
        await scheduler.confirm(me, task.task_id)  # it runs the task
        if how == "cancelled":
            cancel(storage, task)
            await until(lambda: storage.task(task.task_id).status is TaskStatus.CANCELED)
        else:
            clock.now += 1
            await scheduler.check_executors()
        before = storage.task(task.task_id)
        assert before.status is (TaskStatus.CANCELED if how == "cancelled" else TaskStatus.FAILED)
        output_key = task.assigned_outputs["out"].external_id.encode()
        output_before = storage.kv[output_key]
        late = TaskResult.ok(TaskOutputs(b"late", {"out": TAG}))
        with pytest.raises(MalformedRequestError, match="Cannot restore to Finish from saved state"):
            await TaskResults(storage, scheduler.state).update_task_result(str(task.task_id), late)
        assert storage.task(task.task_id) == before
        assert storage.kv[output_key] == output_before  # no cmac written for a result that was refused
        await scheduler.stop()

    run(body)


@pytest.mark.parametrize("changed_elsewhere", [False, True])
@pytest.mark.fake_storage  # counts the fake's reads
def test_a_result_is_decided_on_the_hand_outs_own_record_unless_it_changed(
    storage: FakeStorage, changed_elsewhere: bool
) -> None:
    # The hand-out wrote the task Running and kept that record: the result needs no read of it.
    # When something else wrote the task since, storage refuses the write made on the kept record
    # and the result is decided again on the stored one.
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler = await started(storage)
        me = executor()
        await scheduler.pull_task_wait(me, 5)
        await scheduler.confirm(me, task.task_id)
        running = storage.task(task.task_id)
        if changed_elsewhere:
            storage.put_json(task.key, replace(running, approvals={"someone": "elsewhere"}).to_json())
        storage.reads.clear()
        await TaskResults(storage, scheduler.state).update_task_result(str(task.task_id), TaskResult.err("boom"))
        ended = storage.task(task.task_id)
        assert ended.status is TaskStatus.FAILED and ended.result.failure == "boom"
        assert (task.key in storage.reads) is changed_elsewhere
        if changed_elsewhere:  # decided on the newer record, not written over it
            assert ended.approvals == {"someone": "elsewhere"}
        await scheduler.stop()

    run(body)


@pytest.mark.parametrize("changed_since", [False, True])
def test_a_hand_out_decides_on_the_record_its_element_carries_unless_storage_holds_another(
    storage: FakeStorage, changed_since: bool
) -> None:
    # Cloister's element carries the record as staged: no read at hand-out. Storage applies the
    # hand-out only while it holds those very bytes; a task ended since is not handed out.
    async def body() -> None:
        task, _ = make_task(storage, with_record=True)
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        if changed_since:
            ended = transition(task, TaskStatus.CANCELED, by=Actor.SCHEDULER, result=TaskResult.err("elsewhere"))
            storage.put_json(task.key, ended.to_json())
        handed = await scheduler.pull_task_wait(executor(), 0.2)
        stored = storage.task(task.task_id)
        if changed_since:
            assert handed is None
            assert stored.status is TaskStatus.CANCELED and stored.result.failure == "elsewhere"
        else:
            assert handed is not None and handed.task_id == task.task_id
            assert stored.status is TaskStatus.RUNNING
        if isinstance(storage, FakeStorage):  # the fake counts reads
            assert (task.key in storage.reads) is changed_since
        await scheduler.stop()

    run(body)


class StorageBeforeValueChecks(FakeStorage):
    """A storage service of an earlier version: it refuses an op it does not know."""

    async def commit(self, ops: Sequence[Op]) -> dict[bytes, int]:
        if any(isinstance(op, CheckValue) for op in ops):
            raise InvalidArgumentError("storage op has no operation set")
        return await super().commit(ops)


def test_a_hand_out_against_an_older_storage_service_reads_the_record_instead() -> None:
    async def body() -> None:
        storage = StorageBeforeValueChecks()
        task, _ = make_task(storage, with_record=True)
        scheduler = await started(storage)
        handed = await scheduler.pull_task_wait(executor(), 5)
        assert handed is not None and handed.task_id == task.task_id
        assert storage.task(task.task_id).status is TaskStatus.RUNNING
        assert task.key in storage.reads
        await scheduler.stop()

    run(body)


def test_a_hand_out_racing_a_change_elsewhere_decides_again_on_the_newer_record() -> None:
    # Between the scheduler's read and its commit, another writer ends the task: the conditional
    # commit is refused, the record read again, and the task is not handed out over the change.
    async def body() -> None:
        storage = RacingStorage()
        task, _ = make_task(storage)
        elsewhere = transition(task, TaskStatus.CANCELED, by=Actor.SCHEDULER, result=TaskResult.err("elsewhere"))
        storage.race = (task.key, json.dumps(elsewhere.to_json()).encode())
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        assert await scheduler.pull_task_wait(executor(), 0.2) is None
        assert storage.conflicts == 1
        stored = storage.task(task.task_id)
        assert stored.status is TaskStatus.CANCELED and stored.result.failure == "elsewhere"
        assert storage.queues[STAGED] == {}  # its element is acknowledged: it will never run
        assert task.task_id not in scheduler.state.assignments
        await scheduler.stop()

    run(body)


def test_a_cancellation_racing_a_change_elsewhere_does_not_undo_it() -> None:
    async def body() -> None:
        storage = RacingStorage()
        task, _ = make_task(storage)
        scheduler = await started(storage)
        await scheduler.pull_task_wait(executor(), 5)
        running = storage.task(task.task_id)
        finished = transition(running, TaskStatus.FINISHED, by=Actor.EXECUTOR, result=TaskResult.ok(TaskOutputs()))
        storage.race = (task.key, json.dumps(finished.to_json()).encode())
        cancel(storage, running)
        await until(lambda: storage.conflicts == 1 and not storage.queues[b"cancel_queue"])
        assert storage.task(task.task_id).status is TaskStatus.FINISHED  # the result stands
        await scheduler.stop()

    run(body)


def test_a_task_never_handed_out_survives_a_scheduler_restart_and_runs_once(storage: FakeStorage) -> None:
    async def body() -> None:
        task, staged = make_task(storage)
        first = await started(storage)
        await until(lambda: len(first.state.pending) == 1)
        await first.stop()  # crashed or restarted before any execution service asked
        second = await started(storage)
        assert await second.pull_task_wait(executor(), 5) == staged
        assert await second.pull_task_wait(executor(), 0.05) is None  # handed out once only
        await second.stop()
        third = await started(storage)
        assert await third.pull_task_wait(executor(), 0.05) is None  # nor after another restart
        assert task.task_id in third.state.assignments
        await third.stop()

    run(body)


def test_a_task_handed_out_before_a_restart_fails_when_its_executor_stays_silent(storage: FakeStorage) -> None:
    # Its function may have had effects, so it is failed, never handed out again.
    async def body() -> None:
        clock = Clock()
        task, _ = make_task(storage)
        first = await started(storage, clock, timeout=0.5)
        await first.pull_task_wait(executor(), 5)
        await first.stop()
        second = await started(storage, clock, timeout=0.5)
        clock.now += 1
        await second.check_executors()
        stored = storage.task(task.task_id)
        assert (stored.status, stored.changed_by) == (TaskStatus.FAILED, Actor.SCHEDULER)
        assert (stored.result.failure or "").startswith("Runtime Error: Executor Timeout")
        assert await second.pull_task_wait(executor(), 0.05) is None
        await second.stop()

    run(body)


def test_cancelling_a_running_task_is_canceled_not_failed(storage: FakeStorage) -> None:
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler = await started(storage)
        await scheduler.pull_task_wait(executor(), 5)
        cancel(storage, storage.task(task.task_id))
        await until(lambda: storage.task(task.task_id).status is TaskStatus.CANCELED)
        stored = storage.task(task.task_id)
        assert (stored.result.failure, stored.changed_by) == (REASON_CANCELED_BY_USER, Actor.SCHEDULER)
        await scheduler.stop()

    run(body)


def test_a_receipt_is_stored_with_its_result_and_a_malformed_one_refused(storage: FakeStorage) -> None:
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler = await started(storage)
        await scheduler.pull_task_wait(executor(), 5)
        results = TaskResults(storage, scheduler.state)
        too_long = "a.b." + "c" * (MAX_RECEIPT_CHARS - 3)  # one over the cap, which is 128 KiB
        assert len(too_long) == MAX_RECEIPT_CHARS + 1 == 128 * 1024 + 1
        for bad in ("not a jws", "a.b", "a.b.c.d", too_long):
            with pytest.raises(MalformedRequestError, match="compact JWS"):
                await results.update_task_result(str(task.task_id), TaskResult.err("boom"), receipt=bad)
        assert storage.task(task.task_id).status is TaskStatus.RUNNING  # a refused report changes nothing
        at_cap = "aGVh.cGF5." + "c" * (MAX_RECEIPT_CHARS - 10)
        await results.update_task_result(str(task.task_id), TaskResult.err("boom"), receipt=at_cap)
        ended = storage.task(task.task_id)
        assert (ended.status, ended.receipt) == (TaskStatus.FAILED, at_cap)
        await scheduler.stop()

    run(body)
