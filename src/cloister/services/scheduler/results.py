"""Task status and result reports from executors (reference §10.3 UpdateTaskStatus/UpdateTaskResult).

A result is recorded in one commit: the task's new state, each output's cmac (on the task's
copy of the output and on the standalone ``output-<uuid>`` record) and the deletion of the
task's assignment. A function error ends the task as Failed (99), a deliberate difference from
Teaclave, which ends it as Finished.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace

from cloister.attestation.receipts import MAX_RECEIPT_CHARS
from cloister.errors import FailedOperationError, IllegalTransitionError, MalformedRequestError
from cloister.model.files import OutputFile, parse_cmac
from cloister.model.tasks import Actor, TaskResult, TaskState, TaskStatus, transition
from cloister.rpc.convert.scheduling import parse_uuid
from cloister.services.scheduler.records import (
    Storage,
    assignment_key,
    load_outputs,
    put_output,
    put_task,
    rewrite_task,
)
from cloister.services.scheduler.state import SchedulerState
from cloister.storage.ops import Delete, Op

logger = logging.getLogger(__name__)

_OVERWRITE = "Cannot overwrite output file cmac"
_RECEIPT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _not_found(name: str) -> FailedOperationError:
    return FailedOperationError(f'Upadate_cmac: file not found. "{name}"')  # sic: the reference's spelling


class TaskResults:
    def __init__(self, storage: Storage, state: SchedulerState) -> None:
        self._storage = storage
        self._state = state

    async def update_task_status(self, task_id_text: str) -> None:
        """Staged → Running; the requested status is ignored, as in the reference."""
        task_id = parse_uuid(task_id_text, "task id")

        async def start(task: TaskState | None) -> tuple[list[Op], None]:
            if task is None:
                raise FailedOperationError("storage service error")
            try:
                running = transition(task, TaskStatus.RUNNING, by=Actor.EXECUTOR)
            except IllegalTransitionError:
                raise MalformedRequestError("Cannot restore to Run from saved state") from None
            return [put_task(running)], None

        async with self._state.guard.exclusive(task_id):
            await rewrite_task(self._storage, task_id, start)

    async def update_task_result(
        self, task_id_text: str, result: TaskResult | None, *, receipt: str | None = None
    ) -> TaskStatus:
        """Record a Running task's result (and its signed receipt); returns the status it ended with.

        A result for a task that has ended meanwhile (cancelled, failed on executor loss) is
        refused and changes nothing, its outputs' cmacs included.
        """
        task_id = parse_uuid(task_id_text, "task id")
        if result is None:
            raise MalformedRequestError("UpdateTaskResult needs a result")
        status = TaskStatus.FAILED if result.failure is not None else TaskStatus.FINISHED
        # A receipt carries the manifest's hash, not the manifest: small whatever the arguments.
        if receipt is not None and (len(receipt) > MAX_RECEIPT_CHARS or not _RECEIPT_SHAPE.fullmatch(receipt)):
            raise MalformedRequestError(f"a receipt is a compact JWS of at most {MAX_RECEIPT_CHARS} characters")

        async def end(task: TaskState | None) -> tuple[list[Op], None]:
            if task is None:
                raise FailedOperationError("storage service error")
            try:
                ended = transition(task, status, by=Actor.EXECUTOR, result=result)
            except IllegalTransitionError:
                raise MalformedRequestError("Cannot restore to Finish from saved state") from None
            ended, outputs = await self._with_cmacs(ended, result)
            if receipt is not None:
                ended = replace(ended, receipt=receipt)
            return [put_task(ended), *(put_output(output) for output in outputs), Delete(assignment_key(task_id))], None

        async with self._state.guard.exclusive(task_id):
            await rewrite_task(self._storage, task_id, end, self._state.written, keep=False)
            self._state.assignments.pop(task_id, None)
        logger.info("task %s %s", task_id, status.wire_name)
        return status

    async def _with_cmacs(self, task: TaskState, result: TaskResult) -> tuple[TaskState, list[OutputFile]]:
        """The task with its outputs' cmacs set, and the standalone output records to store."""
        if result.outputs is None or not result.outputs.tags_map:
            return task, []
        assigned = dict(task.assigned_outputs)
        names = sorted(result.outputs.tags_map)
        for name in names:
            output = assigned.get(name)
            if output is None:
                raise _not_found(name)
            if output.cmac is not None:
                raise FailedOperationError(_OVERWRITE)
            assigned[name] = replace(output, cmac=parse_cmac(result.outputs.tags_map[name]))
        standalone = await load_outputs(self._storage, [assigned[name] for name in names])
        updated: list[OutputFile] = []
        for name, record in zip(names, standalone, strict=True):
            if record is None:
                raise _not_found(name)
            if record.cmac is not None:
                raise FailedOperationError(_OVERWRITE)
            updated.append(replace(record, cmac=assigned[name].cmac))
        return replace(task, assigned_outputs=assigned), updated
