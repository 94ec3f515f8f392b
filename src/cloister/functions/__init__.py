"""Built-in functions (layer 4), one module each, found by discovery.

Every module of this package that defines ``NAME: str`` and ``run(arguments: dict, runtime) ->
str`` is a built-in, selected by ``NAME`` exactly as Teaclave selects it by function name
(reference §12); adding one needs no change elsewhere. Functions import only layers 1-3 and this
package; executors (the layer above) import them, never the reverse.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.resources
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, BinaryIO, Protocol

from cloister.functions._tasklog import (
    MAX_LOG_BYTES,
    MAX_LOG_LINES,
    TaskLog,
    capture_task_log,
    function_logger,
)


class FunctionError(Exception):
    """A function, its arguments or its data failed; ``reason`` becomes the task's failure reason.

    Reasons are the reference's texts where it fixes one (§8.9), e.g. ``Cannot deserialize
    arguments`` or ``Function not found.``; they are shown to the task's participants, so they
    never hold file contents or keys.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class FileRuntime(Protocol):
    """The runtime file interface a function gets (reference §11.3)."""

    def open_input(self, name: str) -> BinaryIO: ...

    def create_output(self, name: str) -> BinaryIO: ...


RunFunction = Callable[[dict[str, Any], FileRuntime], str]


@dataclass(frozen=True)
class BuiltinFunction:
    """One discovered built-in: its Teaclave name, entry point and defining module."""

    name: str
    run: RunFunction
    module: str

    def call(self, arguments: dict[str, Any], runtime: FileRuntime) -> str:
        """Run with a copy of ``arguments`` (a function cannot change the staged task); the summary
        must be a string."""
        summary = self.run(dict(arguments), runtime)
        if not isinstance(summary, str):
            raise FunctionError(f"Runtime Error: {self.name} returned {type(summary).__name__}, not a string")
        return summary


@functools.cache
def builtin_functions() -> Mapping[str, BuiltinFunction]:
    """Every built-in in this package, by name (imported once, on first use).

    Raises:
        RuntimeError: two modules declare the same ``NAME`` (a packaging bug, caught by tests).
    """
    found: dict[str, BuiltinFunction] = {}
    for info in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        name = getattr(module, "NAME", None)
        run = getattr(module, "run", None)
        if not isinstance(name, str) or not callable(run):
            continue
        if name in found:
            raise RuntimeError(f"built-in function {name!r} is defined by {found[name].module} and {info.name}")
        found[name] = BuiltinFunction(name, run, info.name)
    return MappingProxyType(found)


def _declared_name(node: ast.stmt) -> str | None:
    """``"x"`` for a module-level ``NAME = "x"`` (or ``NAME: str = "x"``), else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.AnnAssign):
        target = node.target
    else:
        return None
    value = node.value
    if isinstance(target, ast.Name) and target.id == "NAME" and isinstance(value, ast.Constant):
        return value.value if isinstance(value.value, str) else None
    return None


@functools.cache
def builtin_names() -> frozenset[str]:
    """The names of the built-ins, read from their modules' ``NAME = "..."`` without importing them.

    Management checks a builtin function's name when it is registered; importing every built-in
    (numpy and all) into that service just to learn their names would cost it memory and start-up
    time. A test holds this equal to :func:`builtin_functions`.
    """
    names: set[str] = set()
    package = importlib.resources.files(__name__)
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        tree = ast.parse(package.joinpath(f"{info.name}.py").read_text(encoding="utf-8"))
        names.update(name for node in tree.body if (name := _declared_name(node)) is not None)
    return frozenset(names)


def find_function(name: str) -> BuiltinFunction:
    """The built-in called ``name`` (exact, case-sensitive).

    Raises:
        FunctionError: ``Function not found.`` (the reference's reason) for any other name.
    """
    function = builtin_functions().get(name)
    if function is None:
        raise FunctionError("Function not found.")
    return function


__all__ = [
    "MAX_LOG_BYTES",
    "MAX_LOG_LINES",
    "BuiltinFunction",
    "FileRuntime",
    "FunctionError",
    "RunFunction",
    "TaskLog",
    "builtin_functions",
    "builtin_names",
    "capture_task_log",
    "find_function",
    "function_logger",
]
