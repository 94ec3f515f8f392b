"""Hands staged tasks to execution services, applies cancellations, fails the tasks of lost executors.

Staged tasks and cancellations arrive through storage queues read by long-polling watchers;
executors wait in long polls (PullTaskWait, ExecutorHeartbeat) that events wake. The only timer
is the lost-executor monitor, which is off the task path. Every change to a task is one storage
commit made under that task's guard, conditional on the record it was decided on
(``records.rewrite_task``), and memory is updated only after the commit succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from cloister.config import SchedulerSettings
from cloister.errors import CloisterError, NotFoundError
from cloister.model.executors import ExecutorInfo, kind_of
from cloister.model.ids import payload_key
from cloister.model.tasks import (
    REASON_EXECUTOR_TIMEOUT,
    WAITING_PREFIX,
    Actor,
    StagedElement,
    StagedTask,
    TaskResult,
    TaskState,
    TaskStatus,
    transition,
    with_waiting_reason,
)
from cloister.rpc import tracing
from cloister.rpc.long_poll import granted_wait
from cloister.rpc.retry import Backoff, supervised
from cloister.services.scheduler.queues import TaskQueues
from cloister.services.scheduler.records import (
    ASSIGNMENT_PREFIX,
    Storage,
    assignment_key,
    assignment_value,
    cancel_ops,
    parse_assignment,
    put_task,
    rewrite_task,
)
from cloister.services.scheduler.state import Assignment, ExecutorRecord, PendingTask, SchedulerState
from cloister.storage.ops import Ack, Delete, Enqueue, Op, Put
from cloister.storage.records import CANCEL_QUEUE, STAGED_TASK_QUEUE, encode

logger = logging.getLogger(__name__)

MAX_HEARTBEAT_WAIT_SECONDS = 10.0
_RETRY_LIMIT = 5.0
_PAUSE_SLACK_SECONDS = 1.0
"""A monitor wake this much later than asked is the scheduler not running, not a slow loop."""
ANSWER_MARGIN_SECONDS = 2.0
"""A hand-out is answered only with at least this much of its caller's deadline left; with less
(the scheduler was stopped, say), the caller may be gone and the task goes back to the queue."""
_NEVER_TOLD = "was gone before it was told"
_NEVER_CONFIRMED = "never confirmed it"
T = TypeVar("T")


class Skipped(enum.Enum):
    """Why a pending task taken for hand-out was not handed out."""

    CANCELED = "canceled"
    GONE = "gone"  # no longer Staged, or no record


def can_run(kinds: frozenset[str] | None, labels: frozenset[str], item: PendingTask) -> bool:
    """Whether an executor offering ``kinds`` and ``labels`` takes ``item``.

    ``kinds`` None is a Teaclave executor: it takes anything that requires no labels. A task
    whose function type and executor are no registered pair (reference §6.1) can run nowhere, so
    any executor takes it and fails it with ``function not available: ...``.
    """
    if not labels.issuperset(item.requires):
        return False
    if kinds is None:
        return True
    staged = item.staged
    kind = kind_of(staged.executor_type, staged.executor)
    return kind is None or kind in kinds


_WAIT_GRACE_SECONDS = 2.0


def _needs(item: PendingTask) -> str:
    kind = str(kind_of(item.staged.executor_type, item.staged.executor) or item.staged.executor)
    labels = "".join(f", label {label!r}" for label in item.requires)
    return f"executor {kind!r}{labels}"


async def shielded(coro: Coroutine[Any, Any, T]) -> T:
    """Finish ``coro`` even if the caller is cancelled (its client went away): memory must match storage."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_failure)
        raise


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("an operation whose caller went away failed: %s", task.exception())


class Scheduler:
    """The scheduler's logic over a storage client; the servicers only decode and encode."""

    def __init__(
        self,
        storage: Storage,
        settings: SchedulerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        monitor_interval: float = 0.5,
        queue_watch_seconds: float = 30.0,
        reconnect_seconds: float = 0.0,
    ) -> None:
        self.storage = storage
        self._reconnect_seconds = reconnect_seconds
        """How long execution services may take to find this scheduler once it starts (after a
        takeover they are still waiting on the silent one): no task is explained as waiting for
        want of a live one before then."""
        self._started_at = time.monotonic()
        self.settings = settings
        self.state = SchedulerState()
        self._clock = clock
        self._monitor_interval = monitor_interval
        self._not_running = 0.0
        """Seconds the scheduler itself did not run (stopped, suspended, starved), as its monitor saw."""
        self._last_tick: float | None = None
        self.queues = TaskQueues(storage, self.state, queue_watch_seconds)
        self._background: list[asyncio.Task[None]] = []
        self._giving_back: set[asyncio.Future[None]] = set()

    def now(self) -> float:
        """The scheduler's own clock: time it was running. Executors' silence is measured on it,
        so a scheduler that was paused never takes its own pause for theirs."""
        return self._clock() - self._not_running

    def monitor_tick(self) -> None:
        """Called each time the monitor wakes: a wake far later than asked means the scheduler did
        not run meanwhile, and that time is taken off its clock."""
        raw = self._clock()
        if self._last_tick is not None:
            missed = raw - self._last_tick - self._monitor_interval
            if missed > _PAUSE_SLACK_SECONDS:
                self._not_running += missed
                logger.warning(
                    "the scheduler did not run for %.1f s; that time is not counted as execution services' silence",
                    missed,
                )
        self._last_tick = raw

    async def start(self) -> None:
        """Restore assignments from storage (retrying until it answers), then watch the queues."""
        self._started_at = time.monotonic()
        backoff = Backoff(limit=_RETRY_LIMIT)
        while True:
            try:
                await self.load()
                break
            except CloisterError as exc:
                delay = backoff.next()
                logger.warning("cannot read assignments from storage (%s); retrying in %.1f s", exc.message, delay)
                await asyncio.sleep(delay)
        staged = functools.partial(self.queues.watch, STAGED_TASK_QUEUE, self.queues.handle_staged)
        cancels = functools.partial(self.queues.watch, CANCEL_QUEUE, self.queues.handle_cancel)
        self._background = [
            asyncio.create_task(supervised("the staged-task queue watcher", staged), name="scheduler-staged"),
            asyncio.create_task(supervised("the cancel queue watcher", cancels), name="scheduler-cancel"),
            asyncio.create_task(supervised("the executor monitor", self._monitor), name="scheduler-monitor"),
        ]

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []

    async def load(self) -> None:
        """Load the assignment records; their executors count as seen now."""
        keys = await self.storage.keys_with_prefix(ASSIGNMENT_PREFIX)
        now = self.now()
        for key, value in zip(keys, await self.storage.read(keys), strict=True):
            if value is None:
                continue
            try:
                executor_id, task_id = parse_assignment(value.value)
            except ValueError as exc:
                logger.error("ignoring assignment record %r: %s", key, exc)
                continue
            self.state.assignments[task_id] = Assignment(executor_id, task_id, now)
            self.state.see(executor_id, now)
        if self.state.assignments:
            logger.info(
                "restored %d assignment(s) to %d execution service(s)",
                len(self.state.assignments),
                len(self.state.executors),
            )

    # --- hand-out ------------------------------------------------------------------------

    def take(self, accept: Callable[[PendingTask], bool]) -> PendingTask | None:
        """Remove the oldest acceptable pending task and hold its guard; :meth:`claim` releases it."""
        guard = self.state.guard
        item = self.state.pending.take(accept, guard.is_busy)
        if item is not None:
            guard.try_acquire(item.task_id)
        return item

    async def claim(
        self, item: PendingTask, executor_id: str, *, mark_running: bool, offered: bool = False
    ) -> StagedTask | Skipped:
        """Assign a taken task to ``executor_id`` in one commit (Running too, if ``mark_running``).

        ``offered``: the execution service confirms the hand-out (:meth:`confirm`) before it runs
        the task, and until then the task may go back to the queue (:meth:`give_back`).
        """
        task_id = item.task_id
        acks: list[Op] = [] if item.seq is None else [Ack(STAGED_TASK_QUEUE, item.seq)]
        cancel_seq = self.state.to_cancel.get(task_id)

        async def decide(task: TaskState | None) -> tuple[list[Op], StagedTask | Skipped]:
            if cancel_seq is not None:
                return [*cancel_ops(task), *acks, Ack(CANCEL_QUEUE, cancel_seq)], Skipped.CANCELED
            if task is None and mark_running:
                logger.error("task %s has no readable record; dropping its staged element", task_id)
                return acks, Skipped.GONE
            if (
                mark_running
                and task is not None
                and task.status is TaskStatus.RUNNING
                and await self._unanswered(task_id)
            ):
                # An earlier claim of this pending task committed, but storage's answer was lost:
                # its caller got an error and nobody runs it, so this caller gets it instead.
                logger.info("task %s was claimed by a commit whose answer was lost; handing it out now", task_id)
                return [Put(assignment_key(task_id), assignment_value(executor_id, task_id)), *acks], item.staged
            if task is not None and task.status is not TaskStatus.STAGED:
                logger.info("task %s is %s, not Staged; not handing it out", task_id, task.status.wire_name)
                return acks, Skipped.CANCELED if task.status is TaskStatus.CANCELED else Skipped.GONE
            ops: list[Op] = [Put(assignment_key(task_id), assignment_value(executor_id, task_id)), *acks]
            if task is not None and mark_running:
                ops.insert(0, put_task(transition(task, TaskStatus.RUNNING, by=Actor.SCHEDULER, result=TaskResult())))
            return ops, item.staged

        try:
            outcome = await rewrite_task(self.storage, task_id, decide, self.state.written, stored=item.stored)
            if cancel_seq is not None:
                self.state.to_cancel.pop(task_id, None)
            elif isinstance(outcome, StagedTask):
                offer = item if offered else None
                self.state.assignments[task_id] = Assignment(executor_id, task_id, self.now(), offer)
        except BaseException:
            self.state.pending.push(item, front=True)
            raise
        finally:
            self.state.guard.release(task_id)
        if isinstance(outcome, StagedTask):
            logger.info("task %s handed to execution service %s", task_id, executor_id)
        return outcome

    async def _unanswered(self, task_id: uuid.UUID) -> bool:
        """Whether a pending task's stored assignment is a claim whose commit answer was lost.

        A pending task is in no assignment here, so an assignment record for it can only come from
        this scheduler's own claim that failed as far as it knew (and so answered its caller with
        an error): the commit was applied all the same.
        """
        if task_id in self.state.assignments:
            return False
        (record,) = await self.storage.read([assignment_key(task_id)])
        return record is not None

    async def pull_task_wait(
        self, executor: ExecutorInfo, timeout: float, time_left: Callable[[], float | None] = lambda: None
    ) -> StagedTask | None:
        """A task ``executor`` can run, already Running and assigned to it; None after ``timeout``.

        The hand-out is an offer until the service confirms it (:meth:`confirm`): an answer lost
        on the way (a connection broken while the scheduler was stopped, say) sends the task back
        to the queue after ``executor_timeout_seconds`` instead of losing it. ``time_left`` is what
        remains of the caller's deadline (None: no deadline); a task claimed for a caller that
        went away, or is about to, is given back at once.
        """
        timeout = granted_wait(timeout)
        kinds = frozenset(executor.executors)
        labels = frozenset(executor.labels)
        self.state.see(executor.executor_id, self.now(), kinds, reports_running=True, labels=labels)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                changed = self.state.pending.changed
                item = self.take(lambda pending: can_run(kinds, labels, pending))
                if item is not None:
                    outcome = await self._claim_for_caller(item, executor.executor_id)
                    if not isinstance(outcome, StagedTask):
                        continue
                    left = time_left()
                    if left is None or left >= ANSWER_MARGIN_SECONDS:
                        return outcome
                    await shielded(self.give_back(item.task_id, executor.executor_id, _NEVER_TOLD))
                    return None
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation (the
                # caller gone) that arrives as the event fires, and a task would be handed to nobody.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await changed.wait()
        finally:
            self.state.see(executor.executor_id, self.now())

    async def _claim_for_caller(self, item: PendingTask, executor_id: str) -> StagedTask | Skipped:
        """:meth:`claim` for a waiting caller; if the caller goes away meanwhile, the claim still
        finishes (memory must match storage) and a task it assigned is given back."""
        claim = asyncio.ensure_future(self._offer(item, executor_id))
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            claim.add_done_callback(functools.partial(self._give_back_unanswered, item.task_id, executor_id))
            raise

    async def _offer(self, item: PendingTask, executor_id: str) -> StagedTask | Skipped:
        with tracing.span("scheduler/hand out", parent=item.staged.trace):  # a hop of the task's own trace
            return await self.claim(item, executor_id, mark_running=True, offered=True)

    def _give_back_unanswered(self, task_id: uuid.UUID, executor_id: str, claim: asyncio.Future[Any]) -> None:
        if claim.cancelled() or claim.exception() is not None:
            _log_failure(claim)
        elif isinstance(claim.result(), StagedTask):
            task = asyncio.ensure_future(self.give_back(task_id, executor_id, _NEVER_TOLD))
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)
            task.add_done_callback(_log_failure)

    async def payload_of(self, staged: StagedTask) -> bytes:
        """The payload of a handed-out task: carried, or read from its record; empty when the
        function changed or was deleted since (the execution service then fails the task)."""
        if not staged.payload_missing:
            return staged.function_payload
        payload = await self.storage.get(payload_key(staged.function_id, staged.function_payload_sha256))
        if payload is None:
            logger.warning("task %s: its function's payload is no longer stored", staged.task_id)
        return payload or b""

    async def confirm(self, executor: ExecutorInfo, task_id: uuid.UUID) -> None:
        """``executor`` has the task it was handed and runs it now: it can no longer be given back.

        Raises NotFoundError when the task is not (or no longer) assigned to it: it was given back
        before the confirmation came, cancelled or failed, and the service must not run it.
        """
        executor_id = executor.executor_id
        async with self.state.guard.exclusive(task_id):
            assignment = self.state.assignments.get(task_id)
            if assignment is None or assignment.executor_id != executor_id:
                raise NotFoundError(
                    f"task {task_id} is not assigned to execution service {executor_id}: "
                    "it was given back, cancelled or ended before this service confirmed it"
                )
            assignment.offer = None
            assignment.last_present = self.now()
            self.state.see(executor_id, assignment.last_present)  # only a known executor is refreshed

    async def give_back(self, task_id: uuid.UUID, executor_id: str, why: str) -> None:
        """Put a task offered to ``executor_id`` and not confirmed back in the queue.

        Unconfirmed, the execution service has not run the task, and never will (its confirmation
        is refused from now on), so it goes back to Staged with a new queue element, in one commit
        that deletes the assignment. If the commit fails the task stays offered and is given back
        later. A confirmed task is left alone: it is the service's to run or lose.
        """
        async with self.state.guard.exclusive(task_id):
            assignment = self.state.assignments.get(task_id)
            if assignment is None or assignment.executor_id != executor_id or assignment.offer is None:
                return  # confirmed, cancelled or ended meanwhile
            item = assignment.offer

            async def restage(task: TaskState | None) -> tuple[list[Op], None]:
                ops: list[Op] = [Delete(assignment_key(task_id))]
                if task is not None and task.status is TaskStatus.RUNNING:
                    element = StagedElement(item.staged, item.requires)
                    ops += [
                        put_task(transition(task, TaskStatus.STAGED, by=Actor.SCHEDULER)),
                        Enqueue(STAGED_TASK_QUEUE, encode(element)),
                    ]
                return ops, None

            await rewrite_task(self.storage, task_id, restage)
            del self.state.assignments[task_id]
        logger.warning("task %s goes back to the queue: execution service %s %s", task_id, executor_id, why)

    # --- heartbeats ----------------------------------------------------------------------

    async def executor_heartbeat(
        self, executor: ExecutorInfo, running: Sequence[uuid.UUID], wait: float
    ) -> list[uuid.UUID]:
        """The tasks ``executor`` must stop: at once if there are any, else the next within ``wait``.

        Besides cancellations, a task it runs that is no longer assigned to it (it ended, failed
        or was cancelled meanwhile) is to be stopped too, so a lost answer is repaired next time.
        """
        wait = min(max(wait, 0.0), MAX_HEARTBEAT_WAIT_SECONDS)
        kinds = frozenset(executor.executors)
        now = self.now()
        record = self.state.see(executor.executor_id, now, kinds, reports_running=True)
        woken = record.woken
        stop = self._to_stop(record, running, now)
        if not stop and wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # not wait_for: see pull_task_wait
                    await woken.wait()
            record = self.state.see(executor.executor_id, self.now(), kinds, reports_running=True)
            stop = sorted(record.cancels)
            record.cancels.clear()
        return stop

    def _to_stop(self, record: ExecutorRecord, running: Sequence[uuid.UUID], now: float) -> list[uuid.UUID]:
        stop = set(record.cancels)
        record.cancels.clear()
        for task_id in running:
            assignment = self.state.assignments.get(task_id)
            if assignment is not None and assignment.executor_id == record.executor_id:
                assignment.last_present = now
            elif not self.state.guard.is_busy(task_id):
                stop.add(task_id)
        return sorted(stop)

    # --- lost executors ------------------------------------------------------------------

    async def _monitor(self) -> None:
        self._last_tick = None  # a restarted monitor has nothing to compare with
        while True:
            await asyncio.sleep(self._monitor_interval)
            self.monitor_tick()
            try:
                await self.check_executors()
                await self.explain_waiting()
            except CloisterError as exc:
                logger.warning("cannot check execution services (%s); retrying", exc.message)
            except Exception:
                logger.exception("checking execution services failed")

    async def explain_waiting(self) -> None:
        """Give every queued task that no live execution service can run a waiting reason in its record.

        The task stays Staged with its result NotReady; the reason is a field of its own, which
        GetTask shows (``docs/tasks.md``), and is cleared when the task is handed out.
        """
        live = list(self.state.executors.values())
        now = time.monotonic()
        if now - self._started_at < self._reconnect_seconds:
            return
        settled = now - _WAIT_GRACE_SECONDS
        for item in self.state.pending:
            if item.explained or item.since > settled or any(can_run(r.kinds, r.labels, item) for r in live):
                continue
            async with self.state.guard.exclusive(item.task_id):
                if self.state.pending.get(item.task_id) is not item:
                    continue
                reason = f"{WAITING_PREFIX}no live execution service can run it (needs {_needs(item)})"

                async def wait(task: TaskState | None, reason: str = reason) -> tuple[list[Op], bool]:
                    if task is None or task.status is not TaskStatus.STAGED or task.waiting_reason == reason:
                        return [], False
                    return [put_task(with_waiting_reason(task, reason))], True

                if await rewrite_task(self.storage, item.task_id, wait):
                    logger.info("task %s %s", item.task_id, reason)
                item.explained = True

    async def check_executors(self, now: float | None = None) -> None:
        """Fail the tasks of executors silent for longer than the timeout, and forget those executors.

        A Cloister executor that keeps answering but stopped listing one of its tasks for as long
        (its PullTaskWait answer was lost, say) loses that task too.
        """
        now = self.now() if now is None else now
        timeout = self.settings.executor_timeout_seconds
        for record in list(self.state.executors.values()):
            executor_id = record.executor_id
            if now - record.last_seen > timeout:
                reason = f"{REASON_EXECUTOR_TIMEOUT}: execution service {executor_id} stopped answering"
                lost = self.state.assigned_to(executor_id)
                for assignment in lost:
                    await self._lose(assignment, reason)
                still_silent = now - record.last_seen > timeout
                if still_silent and self.state.executors.get(executor_id) is record:
                    del self.state.executors[executor_id]
                    record.wake()
                if lost:
                    logger.warning(
                        "execution service %s stopped answering; %d task(s) failed or went back to the queue",
                        executor_id,
                        len(lost),
                    )
            elif record.reports_running:
                reason = f"{REASON_EXECUTOR_TIMEOUT}: execution service {executor_id} is not running the task"
                for assignment in self.state.assigned_to(executor_id):
                    if now - assignment.last_present > timeout:
                        await self._lose(assignment, reason)

    async def _lose(self, assignment: Assignment, reason: str) -> None:
        """A task its execution service lost: an unconfirmed hand-out never ran and goes back to the
        queue; a confirmed one may have run, so it fails with ``reason`` rather than run twice."""
        if assignment.offer is not None:
            await self.give_back(assignment.task_id, assignment.executor_id, _NEVER_CONFIRMED)
        else:
            await self.fail_assignment(assignment, reason)

    async def fail_assignment(self, assignment: Assignment, reason: str) -> None:
        """End an assigned task as Failed with ``reason`` (if it is still Staged or Running)."""
        task_id = assignment.task_id
        async with self.state.guard.exclusive(task_id):
            if self.state.assignments.get(task_id) is not assignment:
                return

            async def fail(task: TaskState | None) -> tuple[list[Op], None]:
                ops: list[Op] = [Delete(assignment_key(task_id))]
                if task is not None and task.status in (TaskStatus.STAGED, TaskStatus.RUNNING):
                    failed = transition(task, TaskStatus.FAILED, by=Actor.SCHEDULER, result=TaskResult.err(reason))
                    ops.insert(0, put_task(failed))
                return ops, None

            await rewrite_task(self.storage, task_id, fail)
            del self.state.assignments[task_id]
        logger.warning("task %s failed: %s", task_id, reason)
