"""Runs one staged task to a :class:`TaskResult` (reference §11.1): stage its inputs, run its
function, deliver its outputs.

A function error ends the task with the error as its reason (the scheduler marks it Failed,
a deliberate difference from Teaclave's Finished). A bug in the execution service also fails
only that task, with an incident id that points at the logged traceback.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from cloister.executors import Executor, FunctionError, TaskIO, select_executor
from cloister.model.tasks import StagedTask, TaskOutputs, TaskResult
from cloister.rpc import tracing
from cloister.services.execution.attestor import TaskAttestor, TaskRefusedError
from cloister.services.execution.staging import DataPlane

logger = logging.getLogger(__name__)


class TaskRunner:
    """Picks the executor for a task, prepares and runs it, and turns the outcome into a result."""

    def __init__(
        self,
        executors: Mapping[str, Executor],
        data_plane: DataPlane | None = None,
        attestor: TaskAttestor | None = None,
        on_refused: Callable[[StagedTask, str], Awaitable[None]] | None = None,
    ) -> None:
        self._executors = executors
        self._data_plane = data_plane
        self._attestor = attestor
        self._on_refused = on_refused

    async def run(self, task: StagedTask) -> TaskResult:
        """The task's result; cancelling the call cancels the function."""
        result, _ = await self.run_with_receipt(task)
        return result

    async def run_with_receipt(self, task: StagedTask) -> tuple[TaskResult, str | None]:
        """The task's result and, with an attestor, its signed receipt.

        With an attestor, a task that differs from its approved manifest is not run at all: it
        fails with the reason, the refusal is audited, and it gets no receipt.
        """
        if self._attestor is None:
            return await self._run_task(task), None
        try:
            # In a thread: evidence from a TEE may block (the TEE, a collateral fetch on a cache miss).
            with tracing.span("execution/check manifest"):
                attested = await asyncio.to_thread(self._attestor.begin, task)
        except TaskRefusedError as exc:
            logger.warning("task %s refused: %s", task.task_id, exc.reason)
            if self._on_refused is not None:
                await self._on_refused(task, exc.reason)
            return TaskResult.err(exc.reason), None
        except Exception:
            return self._incident(task, "before the task ran"), None
        result = await self._run_task(task)
        inputs = {name: staged.cmac for name, staged in task.input_data.items()}
        try:
            with tracing.span("execution/sign receipt"):
                return result, self._attestor.receipt(attested, result, inputs)
        except Exception:
            # The function ran; its result stands, reported without a receipt (participants see none).
            logger.exception("task %s: could not sign its receipt", task.task_id)
            return result, None

    def _incident(self, task: StagedTask, when: str) -> TaskResult:
        incident = uuid.uuid4().hex[:12]
        logger.exception("task %s: unexpected error %s (incident %s)", task.task_id, when, incident)
        return TaskResult.err(f"Runtime Error: internal error in the execution service (incident {incident})")

    async def _run_task(self, task: StagedTask) -> TaskResult:
        try:
            executor = select_executor(task, self._executors)
            executor.prepare(task)
            with tracing.span("execution/run function"):
                outputs = await self._run(executor, task)
        except FunctionError as exc:
            logger.info("task %s failed: %s", task.task_id, exc.reason)
            return TaskResult.err(exc.reason)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            logger.exception("task %s: unexpected error (incident %s)", task.task_id, incident)
            return TaskResult.err(f"Runtime Error: internal error in the execution service (incident {incident})")
        return TaskResult.ok(outputs)

    async def _run(self, executor: Executor, task: StagedTask) -> TaskOutputs:
        if not task.input_data and not task.output_data:
            return await executor.run(task, TaskIO())  # nothing to stage: skip the task directory
        if self._data_plane is None:
            raise FunctionError("this execution service has no data plane for the task's files")
        async with self._data_plane.open_task(task) as files:
            outputs = await executor.run(task, files)
            tags = await self._data_plane.deliver_outputs(task, files)
        return replace(outputs, tags_map=tags)

    async def aclose(self) -> None:
        for executor in self._executors.values():
            await executor.aclose()
        if self._data_plane is not None:
            await self._data_plane.aclose()
