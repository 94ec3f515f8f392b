"""The builtin executor (reference §11.4): Teaclave's built-in functions, selected by name.

With a sandbox (as execution services run it), each task runs in a sandboxed child like a
Python function, so a crash or a memory blow-up fails only its task and cancelling kills it.
Without one (unit tests) the function runs in a thread of this process; a thread cannot be
stopped, so cancelling abandons it and discards its result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from cloister.executors.base import Executor, TaskIO, wants_log
from cloister.executors.sandbox.host import Sandbox, run_sandboxed
from cloister.functions import BuiltinFunction, FunctionError, builtin_functions, capture_task_log
from cloister.model.tasks import StagedTask, TaskOutputs


class BuiltinExecutor(Executor):
    kind = "builtin"
    executor_type = "builtin"
    executor = "builtin"

    def __init__(self, functions: Mapping[str, BuiltinFunction] | None = None, sandbox: Sandbox | None = None) -> None:
        self._functions = builtin_functions() if functions is None else functions
        self._sandbox = sandbox

    def _function(self, name: str) -> BuiltinFunction:
        function = self._functions.get(name)
        if function is None:
            raise FunctionError("Function not found.")
        return function

    def prepare(self, task: StagedTask) -> None:
        self._function(task.function_name)

    async def run(self, task: StagedTask, io: TaskIO) -> TaskOutputs:
        function = self._function(task.function_name)
        if self._sandbox is not None:
            return await run_sandboxed(self._sandbox, self.kind, task, io)
        # The payload is ignored (§11.4); arguments are the task's JSON object, copied so a
        # function cannot change the staged task.
        with capture_task_log(wants_log(task)) as log:
            summary = await asyncio.to_thread(function.run, dict(task.function_arguments), io)
        if not isinstance(summary, str):
            raise FunctionError(f"Runtime Error: {function.name} returned {type(summary).__name__}, not a string")
        return TaskOutputs(return_value=summary.encode(), log=log.lines)
