"""Python and WebAssembly executors: each task's function runs in a sandboxed child (see ``sandbox``)."""

from __future__ import annotations

from typing import ClassVar

from cloister.executors.base import Executor, FunctionError, TaskIO
from cloister.executors.sandbox.host import Sandbox, run_sandboxed
from cloister.model.tasks import StagedTask, TaskOutputs


class SandboxedExecutor(Executor):
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def prepare(self, task: StagedTask) -> None:
        if not task.function_payload:
            raise FunctionError("the function has no payload")

    async def run(self, task: StagedTask, io: TaskIO) -> TaskOutputs:
        return await run_sandboxed(self._sandbox, self.kind, task, io)

    async def aclose(self) -> None:
        await self._sandbox.close()


class PythonExecutor(SandboxedExecutor):
    kind: ClassVar[str] = "python"


class WasmExecutor(SandboxedExecutor):
    kind: ClassVar[str] = "wasm"
