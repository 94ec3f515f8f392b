"""The executor interface: how an execution service runs one staged task's function.

After temporal's ``WorkflowRunner``: an executor validates a task once (``prepare``), then runs it
(``run``) against a :class:`TaskIO`, the file interface of reference §11.3. The builtin executor
and python and wasm executors run each task in a sandbox of its own (``sandbox``), handing it
the task's files as descriptors, so nothing here assumes the function shares the service's memory.
"""

from __future__ import annotations

import abc
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cloister.functions import FunctionError
from cloister.model.executors import ExecutorKind
from cloister.model.functions import EXECUTOR_TYPES, EXECUTORS
from cloister.model.tasks import StagedTask, TaskOutputs


class TaskIO:
    """The files a function may open, by data name (reference §11.3).

    This base has no files staged, so every name is unknown and fails with the reference's
    reasons; the data plane subclasses it with the task's downloaded inputs and its outputs.
    """

    def open_input(self, name: str) -> BinaryIO:
        raise FunctionError("Invalid input file identifier.")

    def create_output(self, name: str) -> BinaryIO:
        raise FunctionError("Invalid output file identifier")


def reopen(fd: int, mode: str) -> BinaryIO:
    """A file object of its own on ``fd``'s file, from the start; ``"wb"`` empties the file first."""
    duplicate = os.dup(fd)
    if mode == "wb":
        os.ftruncate(duplicate, 0)
    os.lseek(duplicate, 0, os.SEEK_SET)
    return os.fdopen(duplicate, mode)


@dataclass
class TaskFiles(TaskIO):
    """A task's staged files by data name, all in the execution service's private directory,
    which no task can see.

    Inputs are plaintext files the service decrypted. Outputs are descriptors the service
    opened before the function started; the function writes through them, and the service
    reads outputs back only through them, never by a path a task could have touched.
    """

    inputs: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    """The outputs the function opened for writing; the others do not exist."""
    root: Path | None = None
    """The service's private directory for this task's staged files, if any were staged."""

    def open_input(self, name: str) -> BinaryIO:
        path = self.inputs.get(name)
        if path is None:
            raise FunctionError("Invalid input file identifier.")
        return path.open("rb")

    def create_output(self, name: str) -> BinaryIO:
        fd = self.outputs.get(name)
        if fd is None:
            raise FunctionError("Invalid output file identifier")
        self.created.add(name)
        return reopen(fd, "wb")

    def read_output(self, name: str) -> BinaryIO:
        """What the function wrote to output ``name``, from the start."""
        return reopen(self.outputs[name], "rb")

    def close(self) -> None:
        for fd in self.outputs.values():
            os.close(fd)
        self.outputs = {}


class Executor(abc.ABC):
    """Runs the functions of one executor kind.

    Attributes:
        kind: what an execution service announces to the scheduler;
            :data:`cloister.model.executors.PAIRS` says which functions and tasks it runs.
    """

    kind: ExecutorKind

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


def task_log(printed: bytes, *, limit: int, dropped: bool) -> tuple[str, ...]:
    """A task's log (``TaskOutputs.log``) from what its function printed, ``limit`` bytes of it kept.

    Every task gets its log, not only those whose arguments say ``save_log`` (Teaclave's switch,
    still accepted and passed on like any argument): a function's printed output goes to all of
    the task's participants, like its return value. When output past the limit was ``dropped``,
    the last line says so; the bytes kept are within the limit. Control characters are shown as
    ``\\xNN``, so a log cannot drive the terminal of whoever reads it.
    """
    if not dropped:
        return _lines(printed)
    notice = f"[WARN cloister] task log truncated: it is limited to {limit} bytes ([sandbox] log_bytes)"
    kept = printed[: max(limit - len(notice.encode()) - 1, 0)]
    return (*_lines(kept), notice)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _lines(printed: bytes) -> tuple[str, ...]:
    text = printed.decode(errors="replace")
    return tuple(_CONTROL.sub(lambda c: f"\\x{ord(c.group()):02x}", line) for line in text.splitlines())


__all__ = ["Executor", "FunctionError", "TaskFiles", "TaskIO", "pair_name", "task_log"]
