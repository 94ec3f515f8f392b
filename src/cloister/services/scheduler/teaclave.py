"""Teaclave's executor protocol (reference §10.3) on top of Cloister's scheduler state.

Teaclave execution services poll: Heartbeat every few seconds, PullTask on ``NewTask``, then
UpdateTaskStatus and UpdateTaskResult. They share the pending queue and assignments with
Cloister's executors. Unlike the reference, PullTask parses the executor id before taking a
task (so a bad id loses nothing), and PublishTask's tasks live in memory only: they are not
durable and a restart forgets them, as in the reference.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import replace

from cloister.errors import FailedOperationError, MalformedRequestError
from cloister.model.tasks import StagedTask
from cloister.rpc.convert.scheduling import parse_uuid
from cloister.services.scheduler.dispatcher import Scheduler, Skipped, shielded
from cloister.services.scheduler.state import PendingTask

logger = logging.getLogger(__name__)


class ExecutorCommand(enum.IntEnum):
    """Numbered as ``teaclave_common_proto.ExecutorCommand``."""

    NO_ACTION = 0
    STOP = 1
    NEW_TASK = 2


class TeaclaveExecutors:
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    async def heartbeat(self, executor_id_text: str, executing: bool) -> ExecutorCommand:
        """Record the executor; ``Stop`` if its task was cancelled, else whether a task is waiting."""
        scheduler = self._scheduler
        executor_id = str(parse_uuid(executor_id_text, "executor id"))
        record = scheduler.state.see(executor_id, scheduler.now())
        if executing:
            if record.cancels:
                record.cancels.clear()
                return ExecutorCommand.STOP
        else:
            record.cancels.clear()
            # An idle Teaclave executor runs nothing: a task still assigned to it was lost
            # (the reference forgets the assignment and leaves the task Running for ever).
            reason = f"Runtime Error: execution service {executor_id} reported Idle while the task was assigned to it"
            for assignment in scheduler.state.assigned_to(executor_id):
                await scheduler.fail_assignment(assignment, reason)
        return ExecutorCommand.NEW_TASK if len(scheduler.state.pending) else ExecutorCommand.NO_ACTION

    async def pull_task(self, executor_id_text: str) -> StagedTask:
        """The oldest pending task, assigned to the executor (still Staged until UpdateTaskStatus),
        carrying its payload as Teaclave's staged tasks do."""
        scheduler = self._scheduler
        executor_id = str(parse_uuid(executor_id_text, "executor id"))
        scheduler.state.see(executor_id, scheduler.now())
        while True:
            item = scheduler.take(lambda pending: not pending.requires)
            if item is None:
                raise FailedOperationError("task queue is empty")
            outcome = await shielded(scheduler.claim(item, executor_id, mark_running=False))
            if outcome is Skipped.CANCELED:
                raise FailedOperationError("task to pull has been canceled")
            if isinstance(outcome, StagedTask):
                return replace(outcome, function_payload=await scheduler.payload_of(outcome))

    def publish_task(self, raw: bytes) -> None:
        """Queue a staged task in memory only (it bypasses storage, as in the reference)."""
        try:
            staged = StagedTask.from_json(json.loads(raw))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedRequestError(f"invalid staged task: {type(exc).__name__}: {exc}") from None
        state = self._scheduler.state
        if staged.task_id in state.pending or staged.task_id in state.assignments:
            logger.warning("task %s published while already queued or assigned; ignored", staged.task_id)
            return
        state.pending.push(PendingTask(staged, None))
