"""What a task's process does, as pid 1 of its own namespaces: become the task's uid, wait for
its task, limit itself, seal itself with seccomp, and only then read the task and run its function.

The task arrives from the execution service on the sandbox's own channel, as descriptors: the
task spec (JSON in a sealed memfd), the function's payload (another), the result and log pipes,
and one per input and output file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

from cloister.executors.base import reopen
from cloister.executors.sandbox import isolation, protocol, seccomp
from cloister.executors.sandbox.isolation import TaskIdentity
from cloister.functions import FunctionError
from cloister.model.executors import ExecutorKind


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
        return reopen(fd, "rb")

    def create_output(self, name: str) -> BinaryIO:
        fd = self._outputs.get(name)
        if fd is None:
            raise FunctionError("Invalid output file identifier")
        self.created.add(name)
        return reopen(fd, "wb")


def _limit(limits: dict[str, int], identity: TaskIdentity, memory_counted: bool) -> None:
    cpu = limits["cpu_seconds"]
    memory = limits["memory_bytes"]
    if not memory_counted:  # no memory cgroup: the tmpfs mounts count against the address space
        memory = max(memory - identity.scratch_bytes - identity.shm_bytes, 64 * 1024**2)
    settings = [
        ("RLIMIT_AS", memory, memory),
        ("RLIMIT_CPU", cpu, cpu + 1),  # SIGXCPU first, so the reason can name the limit
        ("RLIMIT_NOFILE", limits["open_files"], limits["open_files"]),
        ("RLIMIT_FSIZE", limits["output_bytes"], limits["output_bytes"]),
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_MEMLOCK", 0, 0),
        ("RLIMIT_MSGQUEUE", 0, 0),
    ]
    if identity.uid is not None and not memory_counted:
        # No cgroup counts them; the uid is the task's alone, so this counts only its threads.
        settings.append(("RLIMIT_NPROC", limits["pids"], limits["pids"]))
    for name, soft, hard in settings:
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _read_spec(fd: int) -> dict[str, Any]:
    with os.fdopen(fd, "rb") as stream:
        spec = json.load(stream)
    if not isinstance(spec, dict):
        raise ValueError("the task spec is not an object")
    return spec


def run(channel_fd: int, identity: TaskIdentity, limits: dict[str, int], *, memfd: bool) -> None:
    """Never returns: become the task's process, wait for the task on ``channel_fd``, run it, exit.

    The task arrives as descriptors: the spec and the payload (sealed memfds), the result and log
    pipes, then
    the task's files in the order the spec's ``inputs`` and ``outputs`` index them.
    """
    try:
        isolation.become_task(identity)
        _close_others({channel_fd})
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            os.write(channel_fd, json.dumps({"failed": str(exc)}).encode())
        os._exit(0)
    channel = socket.socket(fileno=channel_fd)
    try:
        protocol.send(channel, {"ready": True})
        received = protocol.receive(channel)
    except OSError:
        received = None
    channel.close()
    if received is None or len(received[1]) < 4:
        os._exit(0)  # the service let the sandbox go unused
    fds = received[1]
    spec_fd, payload_fd, result_fd, log_fd, file_fds = fds[0], fds[1], fds[2], fds[3], fds[4:]
    result = os.fdopen(result_fd, "w")
    outcome: dict[str, Any]
    files = DescriptorFiles({}, {})
    try:
        _limit(limits, identity, memory_counted=memfd)
        tempfile.tempdir = isolation.SCRATCH
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True, errors="replace")
        sys.stderr = sys.stdout
        seccomp.install(memfd=memfd)
        # Tenant data from here on: the function, its arguments and its file names.
        spec = _read_spec(spec_fd)
        with os.fdopen(payload_fd, "rb") as stream:
            payload = stream.read()
        files = DescriptorFiles(
            {name: file_fds[index] for name, index in spec["inputs"].items()},
            {name: file_fds[index] for name, index in spec["outputs"].items()},
        )
        value = _dispatch(spec, payload, files, limits)
        outcome = {"ok": True, "text": value} if isinstance(value, str) else {"ok": True, "hex": value.hex()}
    except FunctionError as exc:
        outcome = {"ok": False, "reason": exc.reason}
    except seccomp.SeccompUnavailableError as exc:
        outcome = {"ok": False, "reason": f"sandbox: cannot contain the function ({exc}); it was not run"}
    except isolation.IsolationError as exc:
        outcome = {"ok": False, "reason": f"sandbox: cannot isolate the task ({exc}); it was not run"}
    except MemoryError:
        outcome = {"ok": False, "reason": f"memory limit of {limits['memory_bytes']} bytes exceeded"}
    except BaseException as exc:
        outcome = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    outcome["created"] = sorted(files.created)
    try:
        sys.stdout.flush()
        result.write(json.dumps(outcome))
        result.flush()
        if outcome["ok"]:
            # Closed now rather than by the exit, which first tears down the copied runtime: the
            # service has the outcome (and the whole log) that much sooner. A failure waits for
            # the exit, which tells a limit's signal from the function's own error.
            result.close()
            os.close(1)
            os.close(2)
    finally:
        os._exit(0)


def _close_others(keep: set[int]) -> None:
    """Close every descriptor but stdio and ``keep`` (the sandbox's channel)."""
    start = 3
    for fd in sorted(keep):
        if fd >= start:
            os.closerange(start, fd)
            start = fd + 1
    os.closerange(start, 1 << 16)


def _run_python(spec: dict[str, Any], payload: bytes, files: DescriptorFiles, limits: dict[str, int]) -> str | bytes:
    from cloister.executors.python_runtime import run_python

    return run_python(payload, spec["arguments"], files)


def _run_builtin(spec: dict[str, Any], payload: bytes, files: DescriptorFiles, limits: dict[str, int]) -> str | bytes:
    from cloister.functions import capture_task_log, find_function

    function = find_function(spec["function_name"])
    with capture_task_log() as log:
        try:
            return function.call(spec["arguments"], files)
        finally:
            for line in log.lines:
                print(line)


def _run_wasm(spec: dict[str, Any], payload: bytes, files: DescriptorFiles, limits: dict[str, int]) -> str | bytes:
    from cloister.executors.wasm_runtime import WasmLimits, run_wasm

    return run_wasm(payload, spec["arguments"], files, WasmLimits(fuel=limits["wasm_fuel"]))


RUNTIMES: dict[ExecutorKind, Callable[[dict[str, Any], bytes, DescriptorFiles, dict[str, int]], str | bytes]] = {
    ExecutorKind.BUILTIN: _run_builtin,
    ExecutorKind.PYTHON: _run_python,
    ExecutorKind.WASM: _run_wasm,
}
"""How the task's process runs a function of each kind."""


def _dispatch(spec: dict[str, Any], payload: bytes, files: DescriptorFiles, limits: dict[str, int]) -> str | bytes:
    runtime = RUNTIMES.get(spec["kind"])
    if runtime is None:
        raise FunctionError(f"this sandbox cannot run {spec['kind']!r} functions")
    return runtime(spec, payload, files, limits)
