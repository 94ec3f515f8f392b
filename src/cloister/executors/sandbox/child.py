"""What a task's child does between fork and exit: limit itself, seal itself, run the function.

Runs inside the zygote's sandbox. Descriptors arrive from the execution service: the task spec
(JSON), the result and log pipes, and one per input and output file.
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import tempfile
from typing import Any, BinaryIO

from cloister.executors.sandbox import seccomp
from cloister.functions import FunctionError


class DescriptorFiles:
    """The runtime file interface over descriptors: each open starts at the beginning of the file."""

    def __init__(self, inputs: dict[str, int], outputs: dict[str, int]) -> None:
        self._inputs = inputs
        self._outputs = outputs
        self.created: set[str] = set()

    def open_input(self, name: str) -> BinaryIO:
        fd = self._inputs.get(name)
        if fd is None:
            raise FunctionError("Invalid input file identifier.")
        duplicate = os.dup(fd)
        os.lseek(duplicate, 0, os.SEEK_SET)
        return os.fdopen(duplicate, "rb")

    def create_output(self, name: str) -> BinaryIO:
        fd = self._outputs.get(name)
        if fd is None:
            raise FunctionError("Invalid output file identifier")
        self.created.add(name)
        duplicate = os.dup(fd)
        os.ftruncate(duplicate, 0)
        os.lseek(duplicate, 0, os.SEEK_SET)
        return os.fdopen(duplicate, "wb")


def _limit(limits: dict[str, int]) -> None:
    cpu = limits["cpu_seconds"]
    for name, soft, hard in (
        ("RLIMIT_AS", limits["memory_bytes"], limits["memory_bytes"]),
        ("RLIMIT_CPU", cpu, cpu + 1),  # SIGXCPU first, so the reason can name the limit
        ("RLIMIT_NOFILE", limits["open_files"], limits["open_files"]),
        ("RLIMIT_FSIZE", limits["output_bytes"], limits["output_bytes"]),
        ("RLIMIT_CORE", 0, 0),
    ):
        resource.setrlimit(getattr(resource, name), (soft, hard))


def run(spec_fd: int, fds: list[int]) -> None:
    """Never returns: the child exits with its result written to the result pipe."""
    with os.fdopen(os.dup(fds[spec_fd]), "rb") as stream:
        spec: dict[str, Any] = json.load(stream)
    result_fd, log_fd = fds[1], fds[2]
    result = os.fdopen(result_fd, "w")
    outcome: dict[str, Any]
    files = DescriptorFiles(
        {name: fds[index] for name, index in spec["inputs"].items()},
        {name: fds[index] for name, index in spec["outputs"].items()},
    )
    try:
        _close_others(set(fds))
        _limit(spec["limits"])
        # By path: the work directory is bound at the same path inside the sandbox, and a
        # directory reached through the host's descriptor would have no path here (getcwd fails).
        os.chdir(spec["scratch"])
        tempfile.tempdir = "."
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True, errors="replace")
        sys.stderr = sys.stdout
        seccomp.install()
        value = _dispatch(spec, files)
        outcome = {"ok": True, "text": value} if isinstance(value, str) else {"ok": True, "hex": value.hex()}
    except FunctionError as exc:
        outcome = {"ok": False, "reason": exc.reason}
    except seccomp.SeccompUnavailableError as exc:
        outcome = {"ok": False, "reason": f"sandbox: cannot contain the function ({exc}); it was not run"}
    except MemoryError:
        outcome = {"ok": False, "reason": "memory limit exceeded"}
    except BaseException as exc:
        outcome = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    outcome["created"] = sorted(files.created)
    try:
        sys.stdout.flush()
        result.write(json.dumps(outcome))
        result.flush()
    finally:
        os._exit(0)


def _close_others(keep: set[int]) -> None:
    """Close every descriptor but stdio and ``keep`` (the zygote's socket among them)."""
    start = 3
    for fd in sorted(keep):
        if fd >= start:
            os.closerange(start, fd)
            start = fd + 1
    os.closerange(start, 1 << 16)


def _dispatch(spec: dict[str, Any], files: DescriptorFiles) -> str | bytes:
    payload = bytes.fromhex(spec["payload_hex"])
    if spec["kind"] == "python":
        from cloister.executors.python_runtime import run_python

        return run_python(payload, spec["arguments"], files)
    if spec["kind"] == "builtin":
        from cloister.functions import capture_task_log, find_function

        function = find_function(spec["function_name"])
        with capture_task_log(True) as log:
            try:
                return function.call(spec["arguments"], files)
            finally:
                for line in log.lines:
                    print(line)
    if spec["kind"] == "wasm":
        from cloister.executors.wasm_runtime import WasmLimits, run_wasm

        return run_wasm(payload, spec["arguments"], files, WasmLimits(fuel=spec["limits"]["wasm_fuel"]))
    raise FunctionError(f"this sandbox cannot run {spec['kind']!r} functions")
