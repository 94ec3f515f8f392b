"""Executors (layer 4): run a staged task's function and return its outputs.

An execution service holds one :class:`Executor` per kind it offers and picks one for each task
with :func:`select_executor`, which enforces the executor pairs of reference §6.1. Executors
import ``functions``, ``model`` and layers below; services import executors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloister.executors.base import Executor, FunctionError, TaskFiles, TaskIO, pair_name, task_log
    from cloister.executors.builtin import BuiltinExecutor
    from cloister.executors.sandbox.host import Sandbox
    from cloister.executors.selection import create_executors, select_executor

_LAZY = {
    "BuiltinExecutor": "cloister.executors.builtin",
    "Executor": "cloister.executors.base",
    "FunctionError": "cloister.executors.base",
    "Sandbox": "cloister.executors.sandbox.host",
    "TaskFiles": "cloister.executors.base",
    "TaskIO": "cloister.executors.base",
    "create_executors": "cloister.executors.selection",
    "pair_name": "cloister.executors.base",
    "select_executor": "cloister.executors.selection",
    "task_log": "cloister.executors.base",
}
"""Public name → the module it is loaded from on first use, so the sandbox template, which
imports this package's runtimes, does not load the service side (configuration, asyncio)."""

__all__ = [
    "BuiltinExecutor",
    "Executor",
    "FunctionError",
    "Sandbox",
    "TaskFiles",
    "TaskIO",
    "create_executors",
    "pair_name",
    "select_executor",
    "task_log",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloister.executors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
