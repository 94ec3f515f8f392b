"""The scheduler's two storage queues: staged tasks to hand out, and cancellations (reference §10.4).

Each queue is read by a watcher that long-polls storage from sequence 0 at start, so elements
left unacknowledged by an earlier run are read again; an element is acknowledged in the same
commit as the change it causes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

from cloister.errors import CloisterError
from cloister.model.tasks import StagedElement, TaskState, TaskStatus
from cloister.rpc.retry import Backoff
from cloister.services.scheduler.records import (
    Storage,
    assignment_key,
    cancel_ops,
    load_task,
    rewrite_task,
)
from cloister.services.scheduler.state import Assignment, PendingTask, SchedulerState
from cloister.storage.ops import Ack, Delete, Op, QueueItem
from cloister.storage.records import CANCEL_QUEUE, STAGED_TASK_QUEUE

logger = logging.getLogger(__name__)

_QUEUE_BATCH = 100
_RETRY_LIMIT = 5.0


class TaskQueues:
    """Applies the queues' elements to the scheduler's state, one storage commit each."""

    def __init__(self, storage: Storage, state: SchedulerState, watch_seconds: float = 30.0) -> None:
        self._storage = storage
        self._state = state
        self._watch_seconds = watch_seconds

    async def watch(self, queue: bytes, handle: Callable[[QueueItem], Awaitable[None]]) -> None:
        """Hand every element of ``queue`` to ``handle``, in order, for ever (a background task)."""
        after, backoff = 0, Backoff(limit=_RETRY_LIMIT)
        while True:
            try:
                items = await self._storage.watch_queue(queue, after, _QUEUE_BATCH, self._watch_seconds)
            except Exception as exc:
                delay = backoff.next()
                logger.warning("cannot watch storage queue %s (%s); retrying in %.1f s", queue.decode(), exc, delay)
                await asyncio.sleep(delay)
                continue
            for item in items:
                try:
                    await handle(item)
                except CloisterError as exc:  # storage trouble: read the element again later
                    logger.warning("storage failed on %s element %d (%s); retrying", queue.decode(), item.seq, exc)
                    await backoff.sleep()
                    break
                except Exception:
                    logger.exception("skipping %s element %d after an unexpected error", queue.decode(), item.seq)
                after = item.seq
            else:
                backoff.reset()

    async def handle_staged(self, item: QueueItem) -> None:
        """A staged-task element: queue it for hand-out, or cancel it if a cancel came first."""
        try:
            element = StagedElement.from_json(json.loads(item.value))
        except (KeyError, TypeError, ValueError) as exc:
            logger.error("dropping an unreadable staged task (element %d): %s", item.seq, exc)
            await self._storage.commit([Ack(STAGED_TASK_QUEUE, item.seq)])
            return
        task_id = element.staged.task_id
        async with self._state.guard.exclusive(task_id):
            existing = self._state.pending.get(task_id)
            if existing is not None and existing.seq == item.seq:
                return
            if existing is not None or task_id in self._state.assignments:
                logger.warning("task %s was staged twice; dropping the second element", task_id)
                await self._storage.commit([Ack(STAGED_TASK_QUEUE, item.seq)])
                return
            cancel_seq = self._state.to_cancel.get(task_id)
            if cancel_seq is not None:
                await self._cancel_unassigned(
                    task_id, [Ack(STAGED_TASK_QUEUE, item.seq), Ack(CANCEL_QUEUE, cancel_seq)]
                )
                self._state.to_cancel.pop(task_id, None)
                return
            self._state.pending.push(PendingTask(element.staged, item.seq, element.requires, stored=element.stored))

    async def handle_cancel(self, item: QueueItem) -> None:
        """A cancel_queue element (the task's state, §10.4): cancel it wherever it is."""
        try:
            task_id = uuid.UUID(json.loads(item.value)["task_id"])
        except (KeyError, TypeError, ValueError) as exc:
            logger.error("dropping an unreadable cancellation (element %d): %s", item.seq, exc)
            await self._storage.commit([Ack(CANCEL_QUEUE, item.seq)])
            return
        async with self._state.guard.exclusive(task_id):
            pending = self._state.pending.get(task_id)
            if pending is not None:
                acks = [Ack(CANCEL_QUEUE, item.seq)]
                if pending.seq is not None:
                    acks.insert(0, Ack(STAGED_TASK_QUEUE, pending.seq))
                await self._cancel_unassigned(task_id, acks)
                self._state.pending.remove(task_id)
                return
            assignment = self._state.assignments.get(task_id)
            if assignment is not None:
                await self._cancel_assigned(assignment, item.seq)
                return
            task = await load_task(self._storage, task_id)
            if task is not None and task.status is TaskStatus.STAGED:
                # Its staged element has not been read yet (the watchers race): cancel it when
                # it is. The cancel element stays queued until then, so a restart keeps it.
                self._state.to_cancel[task_id] = item.seq
                return

            async def orphan(task: TaskState | None) -> tuple[list[Op], None]:
                # Running with no assignment: nobody runs it any more, so the cancellation ends it.
                running = task is not None and task.status is TaskStatus.RUNNING
                return [*(cancel_ops(task) if running else []), Ack(CANCEL_QUEUE, item.seq)], None

            await rewrite_task(self._storage, task_id, orphan)

    async def _cancel_unassigned(self, task_id: uuid.UUID, acks: Sequence[Op]) -> None:
        await rewrite_task(self._storage, task_id, functools.partial(_canceled, with_ops=acks))
        logger.info("task %s canceled before it ran", task_id)

    async def _cancel_assigned(self, assignment: Assignment, cancel_seq: int) -> None:
        task_id = assignment.task_id
        ops: list[Op] = [Delete(assignment_key(task_id)), Ack(CANCEL_QUEUE, cancel_seq)]
        await rewrite_task(self._storage, task_id, functools.partial(_canceled, with_ops=ops))
        del self._state.assignments[task_id]
        executor = self._state.executors.get(assignment.executor_id)
        if executor is not None:
            executor.cancels.add(task_id)
            executor.wake()
        logger.info("task %s canceled; stopping it on execution service %s", task_id, assignment.executor_id)


async def _canceled(task: TaskState | None, with_ops: Sequence[Op]) -> tuple[list[Op], None]:
    """The task ended as Canceled (if it is Staged or Running), committed with ``with_ops``."""
    return [*cancel_ops(task), *with_ops], None
