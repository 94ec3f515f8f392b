"""Executors (layer 4): run a staged task's function and return its outputs.

An execution service holds one :class:`Executor` per kind it offers and picks one for each task
with :func:`select_executor`, which enforces the executor pairs of reference §6.1. Executors
import ``functions``, ``model`` and layers below; services import executors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from cloister.config import SandboxLimits
from cloister.executors.base import (
    PAIRS,
    Executor,
    FunctionError,
    TaskFiles,
    TaskIO,
    pair_name,
    wants_log,
)
from cloister.executors.builtin import BuiltinExecutor
from cloister.executors.sandbox.host import Sandbox
from cloister.executors.sandboxed import PythonExecutor, SandboxedExecutor, WasmExecutor
from cloister.model.tasks import StagedTask

logger = logging.getLogger(__name__)

_SANDBOXED: dict[str, type[SandboxedExecutor]] = {"python": PythonExecutor, "wasm": WasmExecutor}


def create_executors(
    kinds: Iterable[str], limits: SandboxLimits | None = None, work_dir: Path | None = None
) -> dict[str, Executor]:
    """One executor per requested kind this build has; the others are logged and skipped.

    An execution service announces only what this returns, so the scheduler never hands it a
    task it cannot run. Python and wasm share one sandbox (one zygote).
    """
    executors: dict[str, Executor] = {}
    sandbox: Sandbox | None = None
    for kind in kinds:
        if kind in executors:
            continue
        if kind not in ("builtin", *_SANDBOXED):
            logger.warning("executor kind %r is not available in this build; not offering it", kind)
            continue
        if work_dir is None:
            raise ValueError("executors run tasks in a sandbox, which needs a work directory")
        sandbox = sandbox or Sandbox(limits or SandboxLimits(), work_dir)
        executors[kind] = BuiltinExecutor(sandbox=sandbox) if kind == "builtin" else _SANDBOXED[kind](sandbox)
    return executors


def select_executor(task: StagedTask, executors: Mapping[str, Executor]) -> Executor:
    """The executor that runs ``task``.

    Raises:
        FunctionError: ``function not available: (<Type>, <Executor>)`` when the function's
            executor type and the task's executor are not a registered pair, or this service
            does not offer that kind.
    """
    kind = PAIRS.get((task.executor_type, task.executor))
    executor = executors.get(kind) if kind is not None else None
    if executor is None:
        raise FunctionError(f"function not available: {pair_name(task.executor_type, task.executor)}")
    return executor


__all__ = [
    "PAIRS",
    "BuiltinExecutor",
    "Executor",
    "FunctionError",
    "TaskFiles",
    "TaskIO",
    "create_executors",
    "pair_name",
    "select_executor",
    "wants_log",
]
