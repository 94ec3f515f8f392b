"""Python and WebAssembly executors: each task's function runs in a sandbox of its own (see ``sandbox``)."""

from __future__ import annotations

from cloister.executors.base import Executor, FunctionError, TaskIO
from cloister.executors.sandbox.host import Sandbox, run_sandboxed
from cloister.model.executors import ExecutorKind
from cloister.model.tasks import StagedTask, TaskOutputs


class SandboxedExecutor(Executor):
    """Runs functions of ``kind`` whose code is the task's payload."""

    def __init__(self, kind: ExecutorKind, sandbox: Sandbox) -> None:
        self.kind = kind
        self._sandbox = sandbox

    def prepare(self, task: StagedTask) -> None:
        if not task.function_payload:
            raise FunctionError("the function has no payload")

    async def run(self, task: StagedTask, io: TaskIO) -> TaskOutputs:
        return await run_sandboxed(self._sandbox, self.kind, task, io)

    async def aclose(self) -> None:
        await self._sandbox.close()
