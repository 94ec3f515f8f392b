"""The builtin executor (reference §11.4): Teaclave's built-in functions, selected by name.

With a sandbox (as execution services run it), each task runs in a sandboxed child like a
Python function, so a crash or a memory blow-up fails only its task and cancelling kills it.
Without one (unit tests) the function runs in a thread of this process; a thread cannot be
stopped, so cancelling abandons it and discards its result.
"""

from __future__ import annotations

import asyncio

from cloister.executors.base import Executor, TaskIO
from cloister.executors.sandbox.host import Sandbox, run_sandboxed
from cloister.functions import capture_task_log, find_function
from cloister.model.executors import ExecutorKind
from cloister.model.tasks import StagedTask, TaskOutputs


class BuiltinExecutor(Executor):
    kind = ExecutorKind.BUILTIN

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self._sandbox = sandbox

    def prepare(self, task: StagedTask) -> None:
        find_function(task.function_name)

    async def run(self, task: StagedTask, io: TaskIO) -> TaskOutputs:
        function = find_function(task.function_name)
        if self._sandbox is not None:
            return await run_sandboxed(self._sandbox, self.kind, task, io)
        # The payload is ignored (§11.4); arguments are the task's JSON object.
        with capture_task_log() as log:
            summary = await asyncio.to_thread(function.call, task.function_arguments, io)
        return TaskOutputs(return_value=summary.encode(), log=log.lines)

    async def aclose(self) -> None:
        if self._sandbox is not None:
            await self._sandbox.close()
