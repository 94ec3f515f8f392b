"""Executors (layer 4): run a staged task's function and return its outputs.

An execution service holds one :class:`Executor` per kind it offers and picks one for each task
with :func:`select_executor`, which enforces the executor pairs of reference §6.1. Executors
import ``functions``, ``model`` and layers below; services import executors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from cloister.executors.base import KIND_BY_EXECUTOR, PAIRS, Executor, FunctionError, TaskIO, pair_name, wants_log
from cloister.executors.builtin import BuiltinExecutor
from cloister.model.tasks import StagedTask

logger = logging.getLogger(__name__)

_IMPLEMENTED: dict[str, type[Executor]] = {"builtin": BuiltinExecutor}
"""The kinds this build can run; python and wasm join when their sandboxes land."""


def create_executors(kinds: Iterable[str]) -> dict[str, Executor]:
    """One executor per requested kind this build has; the others are logged and skipped.

    An execution service announces only what this returns, so the scheduler never hands it a
    task it cannot run.
    """
    executors: dict[str, Executor] = {}
    for kind in kinds:
        cls = _IMPLEMENTED.get(kind)
        if cls is None:
            logger.warning("executor kind %r is not available in this build; not offering it", kind)
            continue
        executors.setdefault(kind, cls())
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
    "KIND_BY_EXECUTOR",
    "PAIRS",
    "BuiltinExecutor",
    "Executor",
    "FunctionError",
    "TaskIO",
    "create_executors",
    "pair_name",
    "select_executor",
    "wants_log",
]
