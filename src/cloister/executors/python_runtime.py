"""Running a Python function the MesaPy way on CPython 3 (reference §11.5), inside a task's child.

The payload defines ``entrypoint(argv)``; ``argv`` is the flat, key-sorted argument list;
``teaclave_open(name, mode)`` (also ``from teaclave import open``) opens inputs with ``"rb"``
and creates outputs with ``"wb"``. An exception fails the task with its last traceback lines.
"""

from __future__ import annotations

import errno
import linecache
import sys
import traceback
import types
from typing import Any, BinaryIO

from cloister.executors.arguments import flat_arguments
from cloister.functions import FileRuntime, FunctionError

_TRACEBACK_LINES = 6
_FILENAME = "<function>"


def _opener(files: FileRuntime):
    def teaclave_open(name: str, mode: str = "rb") -> BinaryIO:
        if mode not in ("rb", "wb", "r", "w"):
            raise RuntimeError("Teaclave Not Supported")
        try:
            return files.open_input(name) if mode.startswith("r") else files.create_output(name)
        except FunctionError as exc:
            raise RuntimeError(f"fileio_init: {exc.reason}") from None

    return teaclave_open


def run_python(payload: bytes, arguments: dict[str, Any], files: FileRuntime) -> str | bytes:
    """The function's return value (``None`` becomes ``""``).

    Raises:
        FunctionError: the payload does not compile, has no ``entrypoint``, or raised.
    """
    try:
        source = payload.decode("utf-8")
        code = compile(source, _FILENAME, "exec")
        linecache.cache[_FILENAME] = (len(source), None, source.splitlines(True), _FILENAME)
    except (UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise FunctionError(f"the Python payload does not compile: {exc}") from None
    opener = _opener(files)
    teaclave = types.ModuleType("teaclave")
    teaclave.open = opener  # type: ignore[attr-defined]
    sys.modules["teaclave"] = teaclave
    namespace: dict[str, Any] = {"__name__": "__function__", "teaclave_open": opener}
    try:
        exec(code, namespace)  # noqa: S102 - running the task's function is the point; the process is sandboxed
        entrypoint = namespace.get("entrypoint")
        if not callable(entrypoint):
            raise FunctionError("the Python payload defines no entrypoint(argv) function")
        result = entrypoint(flat_arguments(arguments))
    except FunctionError:
        raise
    except MemoryError:
        raise FunctionError("MemoryError: the function exceeded its memory limit") from None
    except OSError as exc:
        if exc.errno == errno.EFBIG:  # RLIMIT_FSIZE: Python ignores SIGXFSZ, so the write fails instead
            raise FunctionError("output size limit exceeded: " + _describe(exc)) from None
        if exc.errno == errno.ENOSPC:  # the task's own tmpfs mounts are full
            raise FunctionError("scratch space limit exceeded (/tmp or /dev/shm): " + _describe(exc)) from None
        raise FunctionError(_describe(exc)) from None
    except BaseException as exc:  # the function's own error, whatever it is, ends its task
        raise FunctionError(_describe(exc)) from None
    if result is None:
        return ""
    if isinstance(result, str | bytes):
        return result
    return str(result)


def _describe(exc: BaseException) -> str:
    """The exception and the last lines of its traceback, from the function's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == _FILENAME]
    lines = [f"  line {f.lineno}, in {f.name}: {(f.line or '').strip()}" for f in frames[-_TRACEBACK_LINES:]]
    head = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return "\n".join(["Traceback (most recent call last):", *lines, head]) if lines else head
