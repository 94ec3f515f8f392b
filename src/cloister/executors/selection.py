"""Which executors a service offers, and which one runs a task (reference §6.1's executor pairs)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from cloister.executors.base import Executor, FunctionError, pair_name
from cloister.executors.builtin import BuiltinExecutor
from cloister.executors.sandbox.host import Sandbox
from cloister.executors.sandboxed import SandboxedExecutor
from cloister.model.executors import ExecutorKind, kind_of, parse_kinds
from cloister.model.tasks import StagedTask

logger = logging.getLogger(__name__)


def create_executors(kinds: Iterable[str], sandbox: Sandbox) -> dict[ExecutorKind, Executor]:
    """One executor per requested kind this build has; the others are logged and skipped.

    An execution service announces only what this returns, so the scheduler never hands it a
    task it cannot run. All kinds run their tasks in ``sandbox``.
    """
    known, unknown = parse_kinds(list(dict.fromkeys(kinds)))
    for name in unknown:
        logger.warning("executor kind %r is not available in this build; not offering it", name)
    return {
        kind: BuiltinExecutor(sandbox) if kind is ExecutorKind.BUILTIN else SandboxedExecutor(kind, sandbox)
        for kind in known
    }


def select_executor(task: StagedTask, executors: Mapping[str, Executor]) -> Executor:
    """The executor that runs ``task``.

    Raises:
        FunctionError: ``function not available: (<Type>, <Executor>)`` when the function's
            executor type and the task's executor are not a registered pair, or this service
            does not offer that kind.
    """
    kind = kind_of(task.executor_type, task.executor)
    executor = executors.get(kind) if kind is not None else None
    if executor is None:
        raise FunctionError(f"function not available: {pair_name(task.executor_type, task.executor)}")
    return executor
