"""The execution service's loops: ``slots`` pullers that each run one task at a time, and a heartbeat.

Nothing sleeps on the task path: a puller waits in the scheduler's PullTaskWait long poll, and
the heartbeat is a long poll that the scheduler answers early when a running task is cancelled.
Only a failing scheduler is retried after a (growing) pause. A cancelled task's asyncio task is
cancelled and its result is not reported: the scheduler has already marked it Canceled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from cloister.config import RPCSettings
from cloister.errors import CloisterError, DeadlineExceededError, DiskFullError, InternalError, UnavailableError
from cloister.model.executors import ExecutorInfo
from cloister.model.tasks import StagedTask, TaskResult
from cloister.rpc import tracing
from cloister.rpc.retry import Backoff, supervised
from cloister.services.execution.runner import TaskRunner
from cloister.services.execution.scheduler_client import UnreadableStagedTaskError

logger = logging.getLogger(__name__)

_RETRYABLE = (UnavailableError, DeadlineExceededError, DiskFullError)
"""Failures to report a result that pass: a peer restarting, or storage's disk until space is freed."""


class SchedulerAPI(Protocol):
    """What the worker needs from the scheduler (:class:`SchedulerClient`, or a fake in tests)."""

    async def pull_task_wait(self, info: ExecutorInfo, timeout: float) -> StagedTask | None: ...

    async def confirm_task(self, info: ExecutorInfo, task_id: uuid.UUID) -> None: ...

    async def executor_heartbeat(
        self, info: ExecutorInfo, running: Iterable[uuid.UUID], wait: float
    ) -> list[uuid.UUID]: ...

    async def update_task_result(self, task_id: uuid.UUID, result: TaskResult) -> None: ...

    async def report_task_result(self, task_id: uuid.UUID, result: TaskResult, receipt: str) -> None: ...


@dataclass
class _Running:
    job: asyncio.Task[tuple[TaskResult, str | None]]
    stop_reason: str | None = None
    """Set when this service stops the task itself (shutdown); None for a scheduler cancel."""


def _describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, CloisterError) else f"{type(exc).__name__}: {exc}"


class ExecutionWorker:
    """Pulls, runs and reports tasks until stopped."""

    def __init__(
        self,
        scheduler: SchedulerAPI,
        runner: TaskRunner,
        info: ExecutorInfo,
        *,
        slots: int,
        heartbeat_seconds: float,
        pull_timeout: float = RPCSettings().long_poll_seconds,
        retry_limit: float = 10.0,
    ) -> None:
        self.info = info
        self._scheduler = scheduler
        self._runner = runner
        self._slots = max(1, slots)
        self._heartbeat_wait = max(0.1, heartbeat_seconds)
        self._pull_timeout = pull_timeout
        self._retry_limit = retry_limit
        self._running: dict[uuid.UUID, _Running] = {}
        self._stopping = asyncio.Event()
        self._slot_tasks: list[asyncio.Task[None]] = []
        self._heartbeat_task: asyncio.Task[None] | None = None

    @property
    def running_task_ids(self) -> tuple[uuid.UUID, ...]:
        """Tasks pulled and not yet reported (running, or having their result reported)."""
        return tuple(self._running)

    def start(self) -> None:
        self._heartbeat_task = asyncio.create_task(
            supervised("the heartbeat loop", self._heartbeat_loop), name="execution-heartbeat"
        )
        self._slot_tasks = [
            asyncio.create_task(
                supervised(f"slot {n}", functools.partial(self._slot, n), done=self._stopping.is_set),
                name=f"execution-slot-{n}",
            )
            for n in range(self._slots)
        ]
        logger.info(
            "execution service %s running %d slot(s) for %s", self.info.executor_id, self._slots, self.info.executors
        )

    async def stop(self, grace: float, report_window: float = 3.0) -> None:
        """Stop pulling; let running tasks finish for ``grace`` seconds, then fail and report them."""
        self._stopping.set()
        pending: set[asyncio.Task[None]] = set(self._slot_tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            reason = f"Runtime Error: execution service {self.info.executor_id} stopped before the task finished"
            for task_id, entry in self._running.items():
                if not entry.job.done():
                    logger.warning("stopping task %s: the execution service is shutting down", task_id)
                    entry.stop_reason = reason
                    entry.job.cancel()
            _, pending = await asyncio.wait(pending, timeout=report_window)
        for task in (*pending, *([self._heartbeat_task] if self._heartbeat_task else [])):
            task.cancel()
        await asyncio.gather(
            *self._slot_tasks, *([self._heartbeat_task] if self._heartbeat_task else []), return_exceptions=True
        )
        self._slot_tasks = []
        self._heartbeat_task = None

    def cancel(self, task_ids: Iterable[uuid.UUID]) -> None:
        """Stop these tasks (the scheduler cancelled them); unknown or finished ones are ignored."""
        for task_id in task_ids:
            entry = self._running.get(task_id)
            if entry is not None and not entry.job.done():
                logger.info("cancelling task %s at the scheduler's request", task_id)
                entry.job.cancel()

    # --- pulling and running ----------------------------------------------------------------

    async def _slot(self, number: int) -> None:
        backoff = Backoff(limit=self._retry_limit)
        while not self._stopping.is_set():
            try:
                task = await self._pull()
            except UnreadableStagedTaskError as exc:
                logger.error("slot %d: the scheduler handed out an unreadable task: %s", number, exc)
                if exc.task_id is not None and await self._confirm(exc.task_id):
                    await self._report(exc.task_id, TaskResult.err(f"Runtime Error: {exc.reason}"))
                continue
            except Exception as exc:
                if self._stopping.is_set():
                    break
                delay = backoff.next()
                logger.warning(
                    "slot %d: cannot pull tasks from the scheduler (%s); retrying in %.1f s",
                    number,
                    _describe(exc),
                    delay,
                )
                await self._pause(delay)
                continue
            backoff.reset()
            if task is None:
                continue
            with tracing.span("execution/task", parent=task.trace):
                if await self._confirm(task.task_id):
                    await self._execute(task)

    async def _pull(self) -> StagedTask | None:
        """The next task, or None when none came or the worker is stopping."""
        pull = asyncio.ensure_future(self._scheduler.pull_task_wait(self.info, self._pull_timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({pull, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not pull.done():
                pull.cancel()
        if pull.cancelled():
            return None
        return pull.result()

    async def _confirm(self, task_id: uuid.UUID) -> bool:
        """Confirm a hand-out before running it; False when the task is no longer this service's.

        Until the scheduler has the confirmation it may give the task to another service, so an
        unconfirmed task is never run: retried while the scheduler is unreachable, given up
        (and left for the scheduler to give back) only when this service stops.
        """
        backoff = Backoff(limit=self._retry_limit)
        while not self._stopping.is_set():
            try:
                await self._scheduler.confirm_task(self.info, task_id)
                return True
            except _RETRYABLE as exc:
                delay = backoff.next()
                logger.warning("cannot confirm task %s (%s); retrying in %.1f s", task_id, exc.message, delay)
                await self._pause(delay)
            except CloisterError as exc:
                logger.warning("not running task %s: %s", task_id, exc.message)
                return False
        return False

    async def _execute(self, task: StagedTask) -> None:
        job = asyncio.create_task(self._runner.run_with_receipt(task), name=f"task-{task.task_id}")
        entry = _Running(job)
        self._running[task.task_id] = entry
        logger.info("running task %s (%s)", task.task_id, task.function_name)
        try:
            # Waiting (rather than awaiting the job) keeps this slot's own cancellation apart
            # from the job's.
            await asyncio.wait({job})
            if job.cancelled():
                if entry.stop_reason is None:
                    logger.info("task %s was cancelled; its result is not reported", task.task_id)
                    return
                result, receipt = TaskResult.err(entry.stop_reason), None
            else:
                result, receipt = job.result()
            await self._report(task.task_id, result, receipt)
        finally:
            if not job.done():
                job.cancel()
            self._running.pop(task.task_id, None)

    async def _report(self, task_id: uuid.UUID, result: TaskResult, receipt: str | None = None) -> None:
        """Report until the scheduler takes or refuses the result, however long it is away.

        Meanwhile the task stays among those the heartbeats say are running, so a scheduler that
        was stopped, restarted or out of disk does not take it for lost; only this service
        stopping (within its report window) gives the result up.
        """
        backoff = Backoff(limit=self._retry_limit)
        while True:
            try:
                if receipt is None:
                    await self._scheduler.update_task_result(task_id, result)
                else:
                    await self._scheduler.report_task_result(task_id, result, receipt)
                return
            except _RETRYABLE as exc:
                delay = backoff.next()
                logger.warning(
                    "cannot report the result of task %s (%s); retrying in %.1f s", task_id, exc.message, delay
                )
                await asyncio.sleep(delay)
            except InternalError as exc:  # a malformed report: over the wire it is INTERNAL
                if receipt is None:
                    logger.warning("the scheduler refused the result of task %s: %s", task_id, exc.message)
                    return
                # The function ran: its result must not be lost with a receipt the scheduler will
                # not keep (too large, say). It is reported without one, and participants see none.
                logger.warning(
                    "the scheduler refused the receipt of task %s (%s); reporting without it", task_id, exc.message
                )
                receipt = None
            except CloisterError as exc:
                # E.g. the task was cancelled or timed out meanwhile: the scheduler has the final word.
                logger.warning("the scheduler refused the result of task %s: %s", task_id, exc.message)
                return

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # not wait_for, which can lose a cancellation on 3.11
                await self._stopping.wait()

    # --- heartbeat --------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        backoff = Backoff(limit=self._retry_limit)
        unreachable = False
        while True:
            try:
                cancel = await self._scheduler.executor_heartbeat(
                    self.info, self.running_task_ids, self._heartbeat_wait
                )
            except Exception as exc:
                delay = backoff.next()
                logger.warning(
                    "scheduler unreachable (heartbeat failed: %s); retrying in %.1f s", _describe(exc), delay
                )
                unreachable = True
                await asyncio.sleep(delay)
                continue
            if unreachable:
                logger.warning("scheduler reachable again")
                unreachable = False
            backoff.reset()
            self.cancel(cancel)
