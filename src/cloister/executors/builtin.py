"""The builtin executor (reference §11.4): Teaclave's built-in functions, selected by name.

Functions run in a thread off the event loop for now; like the other executors they will move
into a sandboxed worker process. A thread cannot be stopped, so cancelling a task abandons its
thread: the task ends at once and the thread's result is discarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from cloister.executors.base import Executor, TaskIO, wants_log
from cloister.functions import BuiltinFunction, FunctionError, builtin_functions, capture_task_log
from cloister.model.tasks import StagedTask, TaskOutputs


class BuiltinExecutor(Executor):
    kind = "builtin"
    executor_type = "builtin"
    executor = "builtin"

    def __init__(self, functions: Mapping[str, BuiltinFunction] | None = None) -> None:
        self._functions = builtin_functions() if functions is None else functions

    def _function(self, name: str) -> BuiltinFunction:
        function = self._functions.get(name)
        if function is None:
            raise FunctionError("Function not found.")
        return function

    def prepare(self, task: StagedTask) -> None:
        self._function(task.function_name)

    async def run(self, task: StagedTask, io: TaskIO) -> TaskOutputs:
        function = self._function(task.function_name)
        # The payload is ignored (§11.4); arguments are the task's JSON object, copied so a
        # function cannot change the staged task.
        with capture_task_log(wants_log(task)) as log:
            summary = await asyncio.to_thread(function.run, dict(task.function_arguments), io)
        if not isinstance(summary, str):
            raise FunctionError(f"Runtime Error: {function.name} returned {type(summary).__name__}, not a string")
        return TaskOutputs(return_value=summary.encode(), log=log.lines)
