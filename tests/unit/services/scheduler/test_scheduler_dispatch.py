"""The scheduler's hand-out, cancellation, heartbeats, lost executors and restart, over fake storage."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from async_helpers import run, until
from scheduler_fakes import CANCEL, STAGED, FakeStorage, cancel, engine_storage, make_task, pytest_generate_tests  # noqa: F401 - the fixture, the hook

from cloister.config import SchedulerSettings
from cloister.errors import NotFoundError, UnavailableError
from cloister.model.executors import ExecutorInfo
from cloister.model.tasks import REASON_CANCELED_BY_USER, Actor, StagedElement, TaskResult, TaskStatus, transition
from cloister.services.scheduler.dispatcher import Scheduler
from cloister.storage.ops import Ack, Check, Put


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def executor(*kinds: str) -> ExecutorInfo:
    return ExecutorInfo(str(uuid.uuid4()), frozenset(kinds or ("builtin",)))


async def started(storage: FakeStorage, timeout: float = 30.0, clock: Clock | None = None) -> Scheduler:
    scheduler = Scheduler(
        storage, SchedulerSettings(executor_timeout_seconds=timeout), clock=clock or Clock(), monitor_interval=3600
    )
    await scheduler.start()
    return scheduler


def test_two_concurrent_pullers_never_get_the_same_task(storage: FakeStorage) -> None:
    async def body() -> None:
        _, staged = make_task(storage)
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        results = await asyncio.gather(
            scheduler.pull_task_wait(executor(), 0.3), scheduler.pull_task_wait(executor(), 0.3)
        )
        assert sorted(r is None for r in results) == [False, True]
        assert next(r for r in results if r is not None).task_id == staged.task_id
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_pull_marks_running_records_the_assignment_and_acks_in_one_commit(storage: FakeStorage) -> None:
    async def body() -> None:
        task, staged = make_task(storage)
        scheduler = await started(storage)
        me = executor()
        assert await scheduler.pull_task_wait(me, 5) == staged
        assert storage.task(task.task_id).status is TaskStatus.RUNNING
        key = f"scheduler-assignment-{task.task_id}".encode()
        assert storage.json(key) == {"executor_id": me.executor_id, "task_id": str(task.task_id)}
        assert storage.queues[STAGED] == {}
        last = storage.commits[-1]
        assert [type(op) for op in last] == [Check, Put, Put, Ack]  # conditional on the record read
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_record_copy_in_an_earlier_element_never_overrides_storage(storage: FakeStorage) -> None:
    # Earlier versions put the task record as staged into the element; the stored record wins.
    async def body() -> None:
        task, staged = make_task(storage, enqueue=False)
        element = {**StagedElement(staged).to_json(), "task": task.to_json()}
        canceled = transition(task, TaskStatus.CANCELED, by=Actor.SCHEDULER, result=TaskResult.err("gone"))
        storage.put_json(task.key, canceled.to_json())
        storage.enqueue(STAGED, json.dumps(element).encode())
        scheduler = await started(storage)
        assert await scheduler.pull_task_wait(executor(), 0.2) is None
        assert storage.task(task.task_id).status is TaskStatus.CANCELED
        assert storage.queues[STAGED] == {}  # dropped, not handed out
        await scheduler.stop()

    run(body)


def test_a_waiting_pull_gets_a_task_staged_later(storage: FakeStorage) -> None:
    async def body() -> None:
        scheduler = await started(storage)
        pull = asyncio.create_task(scheduler.pull_task_wait(executor(), 10))
        await asyncio.sleep(0.01)
        assert not pull.done()
        _, staged = make_task(storage)
        assert (await pull) == staged
        await scheduler.stop()

    run(body)


def test_pull_hands_out_only_tasks_the_executor_can_run(storage: FakeStorage) -> None:
    async def body() -> None:
        _, python_task = make_task(storage, executor="mesapy")
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        assert await scheduler.pull_task_wait(executor("builtin"), 0.05) is None
        assert await scheduler.pull_task_wait(executor("builtin", "python"), 0.05) == python_task
        await scheduler.stop()

    run(body)


def test_a_task_no_pair_can_run_goes_to_any_executor_to_fail_there(storage: FakeStorage) -> None:
    async def body() -> None:
        _, staged = make_task(storage, executor="mesapy", executor_type="builtin")
        scheduler = await started(storage)
        assert await scheduler.pull_task_wait(executor("builtin"), 1) == staged
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_task_no_live_executor_can_run_is_explained_once(
    storage: FakeStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No grace period for execution services to connect first.
    monkeypatch.setattr("cloister.services.scheduler.dispatcher._WAIT_GRACE_SECONDS", -1.0)

    async def body() -> None:
        task, _ = make_task(storage, executor="mesapy")
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        await scheduler.explain_waiting()
        written = len(storage.commits)
        record = storage.task(task.task_id)
        assert record.status is TaskStatus.STAGED
        assert record.waiting_reason is not None
        assert record.waiting_reason == "waiting: no live execution service can run it (needs executor 'python')"
        assert record.result == TaskResult()  # a waiting reason is not a result
        await scheduler.explain_waiting()
        assert len(storage.commits) == written  # explained already: no second write
        assert await scheduler.pull_task_wait(executor("python"), 1) is not None
        running = storage.task(task.task_id)
        assert running.status is TaskStatus.RUNNING and running.waiting_reason is None
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_pending_task_cancelled_is_canceled_and_never_handed_out(storage: FakeStorage) -> None:
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        cancel(storage, task)
        await until(lambda: storage.task(task.task_id).status is TaskStatus.CANCELED)
        assert storage.task(task.task_id).result.failure == REASON_CANCELED_BY_USER
        assert await scheduler.pull_task_wait(executor(), 0.05) is None
        assert storage.queues[STAGED] == {} and storage.queues[CANCEL] == {}
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_cancel_read_before_its_staged_element_still_cancels_the_task(storage: FakeStorage) -> None:
    async def body() -> None:
        task, staged = make_task(storage, enqueue=False)
        scheduler = Scheduler(storage, SchedulerSettings(), monitor_interval=3600)  # watchers not started
        cancel_seq = cancel(storage, task)
        (item,) = await storage.watch_queue(CANCEL, 0, 10, 0)
        await scheduler.queues.handle_cancel(item)
        assert task.task_id in scheduler.state.to_cancel
        assert cancel_seq in storage.queues[CANCEL]  # kept until the staged element comes
        storage.enqueue(STAGED, json.dumps(staged.to_json()).encode())
        (item,) = await storage.watch_queue(STAGED, 0, 10, 0)
        await scheduler.queues.handle_staged(item)
        assert storage.task(task.task_id).status is TaskStatus.CANCELED
        assert len(scheduler.state.pending) == 0 and not scheduler.state.to_cancel
        assert storage.queues[STAGED] == {} and storage.queues[CANCEL] == {}

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_cancelling_an_assigned_task_answers_its_executors_heartbeat_at_once(storage: FakeStorage) -> None:
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler = await started(storage)
        me = executor()
        assert await scheduler.pull_task_wait(me, 5) is not None
        heartbeat = asyncio.create_task(scheduler.executor_heartbeat(me, [task.task_id], 10))
        await asyncio.sleep(0.01)
        assert not heartbeat.done()
        cancel(storage, task)
        assert await heartbeat == [task.task_id]
        stored = storage.task(task.task_id)
        assert stored.status is TaskStatus.CANCELED and stored.result.failure == REASON_CANCELED_BY_USER
        assert f"scheduler-assignment-{task.task_id}".encode() not in storage.kv
        # The task is no longer assigned, so a heartbeat still listing it is told to stop it.
        assert await scheduler.executor_heartbeat(me, [task.task_id], 0) == [task.task_id]
        await scheduler.stop()

    run(body)


def test_heartbeat_without_news_waits_and_answers_empty(storage: FakeStorage) -> None:
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler = await started(storage)
        me = executor()
        await scheduler.pull_task_wait(me, 5)
        assert await scheduler.executor_heartbeat(me, [task.task_id], 0.02) == []
        await scheduler.stop()

    run(body)


def test_the_schedulers_own_pause_is_not_executors_silence(storage: FakeStorage) -> None:
    """Stopped 20 s (SIGSTOP), the scheduler wakes to executors that were fine all along: their
    silence is measured only over time the scheduler ran."""

    async def body() -> None:
        clock = Clock()
        task, _ = make_task(storage)
        scheduler = await started(storage, timeout=3, clock=clock)
        scheduler._monitor_interval = 0.5  # ticks are driven by hand here; the real monitor sleeps on
        me = executor()
        await scheduler.pull_task_wait(me, 5)
        await scheduler.confirm(me, task.task_id)  # it runs the task
        scheduler.monitor_tick()
        clock.now += 0.5 + 20  # the monitor woke 20 s late: the scheduler was stopped
        scheduler.monitor_tick()
        await scheduler.check_executors()
        assert storage.task(task.task_id).status is TaskStatus.RUNNING
        for _ in range(8):  # running again, the executor's silence counts and outlasts the timeout
            clock.now += 0.5
            scheduler.monitor_tick()
        await scheduler.check_executors()
        assert storage.task(task.task_id).status is TaskStatus.FAILED
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_lost_executors_task_fails_with_the_timeout_reason(storage: FakeStorage) -> None:
    async def body() -> None:
        clock = Clock()
        task, _ = make_task(storage)
        scheduler = await started(storage, timeout=0.5, clock=clock)
        me = executor()
        await scheduler.pull_task_wait(me, 5)
        await scheduler.confirm(me, task.task_id)  # it runs the task
        await scheduler.check_executors()
        assert storage.task(task.task_id).status is TaskStatus.RUNNING
        clock.now += 1
        await scheduler.check_executors()
        stored = storage.task(task.task_id)
        assert stored.status is TaskStatus.FAILED
        assert stored.result.failure == (
            f"Runtime Error: Executor Timeout: execution service {me.executor_id} stopped answering"
        )
        assert f"scheduler-assignment-{task.task_id}".encode() not in storage.kv
        assert me.executor_id not in scheduler.state.executors
        await scheduler.stop()

    run(body)


def test_a_task_its_live_executor_stops_listing_fails_too(storage: FakeStorage) -> None:
    async def body() -> None:
        clock = Clock()
        task, _ = make_task(storage)
        scheduler = await started(storage, timeout=0.5, clock=clock)
        me = executor()
        await scheduler.pull_task_wait(me, 5)
        await scheduler.confirm(me, task.task_id)  # it runs the task
        clock.now += 1
        assert await scheduler.executor_heartbeat(me, [], 0) == []  # alive, but not running it
        await scheduler.check_executors()
        stored = storage.task(task.task_id)
        assert stored.status is TaskStatus.FAILED
        assert "is not running the task" in (stored.result.failure or "")
        await scheduler.stop()

    run(body)


def test_state_is_rebuilt_from_storage_at_start(storage: FakeStorage) -> None:
    async def body() -> None:
        clock = Clock()
        _, staged = make_task(storage)
        running, _ = make_task(storage, status=TaskStatus.RUNNING, enqueue=False)
        lost_executor = str(uuid.uuid4())
        storage.put_json(
            f"scheduler-assignment-{running.task_id}".encode(),
            {"executor_id": lost_executor, "task_id": str(running.task_id)},
        )
        scheduler = await started(storage, timeout=30, clock=clock)
        await until(lambda: len(scheduler.state.pending) == 1)
        assert scheduler.state.assignments[running.task_id].executor_id == lost_executor
        assert lost_executor in scheduler.state.executors
        assert await scheduler.pull_task_wait(executor(), 1) == staged
        clock.now += 31
        await scheduler.check_executors()
        assert storage.task(running.task_id).status is TaskStatus.FAILED
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_task_no_longer_staged_is_acknowledged_and_skipped(storage: FakeStorage) -> None:
    async def body() -> None:
        make_task(storage, status=TaskStatus.CANCELED)
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        assert await scheduler.pull_task_wait(executor(), 0.05) is None
        assert storage.queues[STAGED] == {}
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_failed_hand_out_leaves_the_task_pending(storage: FakeStorage) -> None:
    async def body() -> None:
        task, staged = make_task(storage)
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        storage.fail_next_commits = 1
        with pytest.raises(UnavailableError):
            await scheduler.pull_task_wait(executor(), 1)
        assert storage.task(task.task_id).status is TaskStatus.STAGED
        assert await scheduler.pull_task_wait(executor(), 1) == staged
        await scheduler.stop()

    run(body)


def test_a_hand_out_claimed_too_late_for_its_caller_goes_back_to_the_queue(storage: FakeStorage) -> None:
    """The scheduler was stopped while an execution service waited: by the time it claims a task,
    the caller's deadline has (nearly) passed, so the answer would reach nobody."""

    async def body() -> None:
        task, staged = make_task(storage)
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        assert await scheduler.pull_task_wait(executor(), 5, time_left=lambda: 0.5) is None
        assert storage.task(task.task_id).status is TaskStatus.STAGED
        assert await storage.get(f"scheduler-assignment-{task.task_id}".encode()) is None
        assert task.task_id not in scheduler.state.assignments
        assert await scheduler.pull_task_wait(executor(), 5, time_left=lambda: 15.0) == staged
        assert storage.task(task.task_id).status is TaskStatus.RUNNING
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_caller_gone_while_its_task_is_claimed_leaves_the_task_to_the_next_one(storage: FakeStorage) -> None:
    async def body() -> None:
        task, staged = make_task(storage)
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        committing, release = storage.hold_next_commit()
        gone = asyncio.create_task(scheduler.pull_task_wait(executor(), 5))
        await committing.wait()
        gone.cancel()  # its RPC was cancelled, or passed its deadline
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        await until(lambda: storage.task(task.task_id).status is TaskStatus.STAGED)
        assert await scheduler.pull_task_wait(executor(), 5) == staged
        assert len(storage.queues[STAGED]) == 0  # the element queued again was acknowledged with it
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_claim_committed_whose_answer_was_lost_is_handed_out_again(storage: FakeStorage) -> None:
    """Storage applied the hand-out but stalled as it answered: the puller got an error, so the
    task, Running and assigned in storage, belongs to nobody, and the next puller gets it."""

    async def body() -> None:
        task, staged = make_task(storage)
        scheduler = await started(storage)
        await until(lambda: len(scheduler.state.pending) == 1)
        storage.lose_next_answers = 1
        first = executor()
        with pytest.raises(UnavailableError):
            await scheduler.pull_task_wait(first, 1)
        assert storage.task(task.task_id).status is TaskStatus.RUNNING  # applied all the same
        second = executor()
        assert await scheduler.pull_task_wait(second, 1) == staged
        key = f"scheduler-assignment-{task.task_id}".encode()
        assert storage.json(key) == {"executor_id": second.executor_id, "task_id": str(task.task_id)}
        assert scheduler.state.assignments[task.task_id].executor_id == second.executor_id
        assert storage.queues[STAGED] == {}
        await scheduler.stop()

    run(body)


@pytest.mark.parametrize("executor_state", ["alive", "silent"])
def test_a_hand_out_never_confirmed_goes_back_to_the_queue(storage: FakeStorage, executor_state: str) -> None:
    """The answer to PullTaskWait was lost on the way (the connection broke while the scheduler
    was stopped, say): the execution service never confirms, so the task runs elsewhere instead
    of failing as lost, and the late confirmation is refused."""

    async def body() -> None:
        clock = Clock()
        task, staged = make_task(storage)
        scheduler = await started(storage, timeout=0.5, clock=clock)
        first = executor()
        assert await scheduler.pull_task_wait(first, 5) == staged
        clock.now += 1
        if executor_state == "alive":
            assert await scheduler.executor_heartbeat(first, [], 0) == []
        await scheduler.check_executors()
        stored = storage.task(task.task_id)
        assert stored.status is TaskStatus.STAGED and stored.result == TaskResult()
        assert await storage.get(f"scheduler-assignment-{task.task_id}".encode()) is None
        with pytest.raises(NotFoundError, match="not assigned to execution service"):
            await scheduler.confirm(first, task.task_id)
        second = executor()
        assert await scheduler.pull_task_wait(second, 5) == staged
        await scheduler.confirm(second, task.task_id)
        assert storage.task(task.task_id).status is TaskStatus.RUNNING
        assert scheduler.state.assignments[task.task_id].executor_id == second.executor_id
        await scheduler.stop()

    run(body)


def test_a_confirmed_task_is_never_given_back_and_only_its_executor_confirms(storage: FakeStorage) -> None:
    async def body() -> None:
        task, _ = make_task(storage)
        scheduler = await started(storage)
        me = executor()
        await scheduler.pull_task_wait(me, 5)
        with pytest.raises(NotFoundError):
            await scheduler.confirm(executor(), task.task_id)  # another service cannot confirm it
        await scheduler.confirm(me, task.task_id)
        await scheduler.confirm(me, task.task_id)  # a retried confirmation whose answer was lost
        await scheduler.give_back(task.task_id, me.executor_id, "test")
        assert storage.task(task.task_id).status is TaskStatus.RUNNING
        assert scheduler.state.assignments[task.task_id].executor_id == me.executor_id
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's queues, records or commits, or fails its commits
def test_a_confirmation_racing_the_give_back_is_refused(storage: FakeStorage) -> None:
    """Whichever of the two the scheduler takes first wins; here the give-back's commit is in flight."""

    async def body() -> None:
        clock = Clock()
        task, staged = make_task(storage)
        scheduler = await started(storage, timeout=0.5, clock=clock)
        me = executor()
        await scheduler.pull_task_wait(me, 5)
        committing, release = storage.hold_next_commit()
        clock.now += 1
        monitor = asyncio.create_task(scheduler.check_executors())
        await committing.wait()
        confirming = asyncio.create_task(scheduler.confirm(me, task.task_id))
        await asyncio.sleep(0.05)
        assert not confirming.done()  # it waits for the give-back's commit
        release.set()
        await monitor
        with pytest.raises(NotFoundError):
            await confirming
        assert storage.task(task.task_id).status is TaskStatus.STAGED
        assert await scheduler.pull_task_wait(executor(), 5) == staged
        await scheduler.stop()

    run(body)


@pytest.mark.fake_storage  # inspects the fake's records
def test_no_task_is_explained_as_waiting_before_execution_services_could_find_a_new_scheduler(
    storage: FakeStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a takeover, execution services are still waiting on the silent scheduler: until they
    # could have found this one, "no live execution service" would be false.
    monkeypatch.setattr("cloister.services.scheduler.dispatcher._WAIT_GRACE_SECONDS", -1.0)

    async def body() -> None:
        task, _ = make_task(storage, executor="mesapy")
        scheduler = Scheduler(storage, SchedulerSettings(), monitor_interval=3600, reconnect_seconds=0.5)
        await scheduler.start()
        await until(lambda: len(scheduler.state.pending) == 1)
        await scheduler.explain_waiting()
        assert storage.task(task.task_id).waiting_reason is None
        await asyncio.sleep(0.6)
        await scheduler.explain_waiting()
        assert storage.task(task.task_id).waiting_reason is not None
        await scheduler.stop()

    run(body)
