"""The executor interface: how an execution service runs one staged task's function.

After temporal's ``WorkflowRunner``: an executor validates a task once (``prepare``), then runs it
(``run``) against a :class:`TaskIO`, the file interface of reference §11.3. The builtin executor
runs in-process; python and wasm executors will run each task in a sandboxed worker process and
proxy ``TaskIO`` to it, so nothing here assumes the function shares the service's memory.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

from cloister.functions import FunctionError
from cloister.model.functions import EXECUTOR_TYPES, EXECUTORS
from cloister.model.tasks import StagedTask, TaskOutputs

PAIRS: dict[tuple[str, str], str] = {
    ("builtin", "builtin"): "builtin",
    ("python", "mesapy"): "python",
    ("wamr", "wamr"): "wasm",
}
"""(function executor type, task executor) → the executor kind that runs it (reference §6.1)."""

class TaskIO:
    """The files a function may open, by data name (reference §11.3).

    This base has no files staged, so every name is unknown and fails with the reference's
    reasons; the data plane subclasses it with the task's downloaded inputs and its outputs.
    """

    def open_input(self, name: str) -> BinaryIO:
        raise FunctionError("Invalid input file identifier.")

    def create_output(self, name: str) -> BinaryIO:
        raise FunctionError("Invalid output file identifier")


def prepare_work_dir(path: Path) -> Path:
    """The directory tasks' directories live in: searchable, not listable (0311), so a sandboxed
    function that knows only its own directory's name cannot find another task's."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o311)  # noqa: S103 - search without read is the point
    return path


@dataclass
class TaskFiles(TaskIO):
    """A task's staged plaintext files by data name, in its private directory ``root``."""

    root: Path
    inputs: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    def open_input(self, name: str) -> BinaryIO:
        path = self.inputs.get(name)
        if path is None:
            raise FunctionError("Invalid input file identifier.")
        return path.open("rb")

    def create_output(self, name: str) -> BinaryIO:
        path = self.outputs.get(name)
        if path is None:
            raise FunctionError("Invalid output file identifier")
        return path.open("wb")


class Executor(abc.ABC):
    """Runs the functions of one executor kind.

    Attributes:
        kind: what an execution service announces to the scheduler (``builtin``, ``python``,
            ``wasm``); :data:`PAIRS` says which functions and tasks it runs.
    """

    kind: ClassVar[str]

    @abc.abstractmethod
    def prepare(self, task: StagedTask) -> None:
        """Check, before any data moves, that ``task`` can run here (e.g. the function exists).

        Raises:
            FunctionError: the task cannot run; its reason becomes the task's failure reason.
        """

    @abc.abstractmethod
    async def run(self, task: StagedTask, io: TaskIO) -> TaskOutputs:
        """Run ``task``'s function with ``io``; cancelling the call stops the function.

        Raises:
            FunctionError: the function failed; its reason becomes the task's failure reason.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most executors hold nothing
        """Release what the executor holds (worker processes, compiled modules)."""


def pair_name(executor_type: str, executor: str) -> str:
    """``(Builtin, MesaPy)``: the pair as the reference's error messages spell it (Rust Debug names)."""
    return f"({EXECUTOR_TYPES.get(executor_type, executor_type)}, {EXECUTORS.get(executor, executor)})"


def wants_log(task: StagedTask) -> bool:
    """Whether the task asked for its log: ``save_log`` is the JSON string ``"true"`` (§11.1)."""
    return task.function_arguments.get("save_log") == "true"


__all__ = ["PAIRS", "Executor", "FunctionError", "TaskFiles", "TaskIO", "pair_name", "wants_log"]
