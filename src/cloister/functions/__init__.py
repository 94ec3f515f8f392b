"""Built-in functions (layer 4), one module each, found by discovery.

Every module of this package that defines ``NAME: str`` and ``run(arguments: dict, runtime) ->
str`` is a built-in, selected by ``NAME`` exactly as Teaclave selects it by function name
(reference §12); adding one needs no change elsewhere. Functions import only layers 1-3 and this
package; executors (the layer above) import them, never the reverse.
"""

from __future__ import annotations

import functools
import importlib
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
    "capture_task_log",
    "find_function",
    "function_logger",
]
