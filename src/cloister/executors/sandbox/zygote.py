"""The template: a trusted process that no tenant code or data ever touches, forking one sandbox
per task.

Usage (by the execution service, inside bubblewrap): ``python -m cloister.executors.sandbox.zygote FD``
where FD is its end of a SOCK_SEQPACKET socket. It imports the runtimes once, answers ``ready``,
then for every ``prepare`` forks the sandbox's process straight into a new pid namespace (it
unshares one for that fork alone, then rejoins its own), where it is pid 1. That process joins
its cgroups, unshares every other namespace, mounts its private file systems and becomes the
task (see :mod:`isolation`, then :mod:`child`), and waits on its own channel for its task.
``arm`` starts a sandbox's wall clock (its task has been handed over); ``cancel`` kills it, and
with it its whole pid namespace. Messages carry only what the service decided (limits, uid); the
task itself reaches the sandbox directly, never through the template.

One fork per task, not two (a keeper forking the task's process): copying and tearing down the
warm runtime's address space is nearly all a sandbox costs, so a second copy doubled it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from cloister.executors.sandbox import isolation, protocol


@dataclass
class _Sandbox:
    pid: int
    deadline: float
    """When its wall time runs out: never, until its task is handed over (``arm``)."""
    wall_seconds: float
    cpu_seconds: int
    output_bytes: int
    killed_because: str | None = None


def _preload() -> None:
    """Import what children use, so forking gives each a warm runtime."""
    import cloister.executors.python_runtime
    import cloister.executors.sandbox.child  # noqa: F401
    from cloister.executors.sandbox import seccomp

    seccomp.preload()

    from cloister.functions import builtin_functions

    builtin_functions()  # imports every built-in module
    for optional in ("numpy", "cloister.executors.wasm_runtime"):
        with contextlib.suppress(ImportError):
            __import__(optional)


def _reason(sandbox: _Sandbox, status: int, cpu_used: float) -> str | None:
    """Why the task ended abnormally, or None when its process exited on its own."""
    if sandbox.killed_because:
        return sandbox.killed_because
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        # As pid 1 of its namespace the task ignores SIGXCPU; the hard limit's SIGKILL ends it.
        if sig in (signal.SIGXCPU, signal.SIGKILL) and cpu_used >= sandbox.cpu_seconds:
            return f"CPU time limit of {sandbox.cpu_seconds} s exceeded"
        if sig == signal.SIGXFSZ:
            return f"output size limit of {sandbox.output_bytes} bytes exceeded"
        with contextlib.suppress(ValueError):
            return f"the function's process died ({signal.Signals(sig).name})"
        return f"the function's process died (signal {sig})"
    return None


def serve(sock: socket.socket) -> None:
    sandboxes: dict[str, _Sandbox] = {}
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "socket")
    selector.register(wake_read, selectors.EVENT_READ, "child")
    protocol.send(sock, {"op": "ready", "pid": os.getpid()})
    own = os.pidfd_open(os.getpid())  # to rejoin its own pid namespace after each sandbox's fork
    keep = {sock.fileno(), wake_read, wake_write, selector.fileno(), own}  # type: ignore[attr-defined]
    while True:
        now = time.monotonic()
        timeout = min((k.deadline - now for k in sandboxes.values() if k.deadline < math.inf), default=None)
        for key, _ in selector.select(None if timeout is None else max(timeout, 0)):
            if key.data == "child":
                os.read(wake_read, 4096)
            else:
                received = protocol.receive(sock)
                if received is None:
                    for sandbox in sandboxes.values():
                        _kill(sandbox.pid)
                    return
                message, fds = received
                _handle(message, fds, sandboxes, keep, own)
        now = time.monotonic()
        for sandbox in sandboxes.values():
            if sandbox.deadline <= now and not sandbox.killed_because:
                sandbox.killed_because = f"wall time limit of {sandbox.wall_seconds:g} s exceeded"
                _kill(sandbox.pid)
        _reap(sock, sandboxes)


def _handle(message: dict[str, Any], fds: list[int], sandboxes: dict[str, _Sandbox], keep: set[int], own: int) -> None:
    sandbox = sandboxes.get(message.get("id", ""))
    if message.get("op") == "cancel" and sandbox is not None:
        sandbox.killed_because = "canceled"
        _kill(sandbox.pid)
    elif message.get("op") == "arm" and sandbox is not None:
        sandbox.deadline = time.monotonic() + sandbox.wall_seconds
    elif message.get("op") == "prepare":
        limits = message["limits"]
        pid = _fork_into_new_pid_namespace(own)
        if pid == 0:
            _become_sandbox(message, fds, keep)
        sandboxes[message["id"]] = _Sandbox(
            pid, math.inf, limits["wall_seconds"], limits["cpu_seconds"], limits["output_bytes"]
        )
    for fd in fds:
        os.close(fd)


def _fork_into_new_pid_namespace(own: int) -> int:
    """``os.fork()``, with the child as pid 1 of a new pid namespace; this process stays in its own.

    If the template cannot rejoin its own pid namespace its next fork would land in this
    sandbox's: it exits instead (the service starts a new one).
    """
    isolation.unshare_pid_namespace()
    try:
        pid = os.fork()
    except BaseException:
        _rejoin(own)
        raise
    if pid != 0:
        _rejoin(own)
    return pid


def _rejoin(own: int) -> None:
    try:
        isolation.join_pid_namespace(own)
    except OSError as exc:
        print(f"cannot rejoin the template's pid namespace ({exc}); exiting", file=sys.stderr, flush=True)
        os._exit(70)


def _become_sandbox(message: dict[str, Any], fds: list[int], keep: set[int]) -> None:
    """The forked sandbox process: isolate itself, then wait for its task. Never returns."""
    from cloister.executors.sandbox import child

    try:
        # The template's signal plumbing is not the sandbox's: its wakeup pipe is closed below.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
        isolation.die_with_parent()
        groups, channel = fds[: message["cgroups"]], fds[message["cgroups"]]
        identity = isolation.TaskIdentity(**message["identity"])
        isolation.join_cgroups(groups)
        isolation.enter_namespaces(identity)
    except BaseException as exc:  # the sandbox could not be made: say why on its channel
        with contextlib.suppress(BaseException):
            os.write(fds[message["cgroups"]], json.dumps({"failed": str(exc)}).encode())
        os._exit(0)
    child.run(channel, identity, message["limits"], memfd=message["memfd"])


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(sock: socket.socket, sandboxes: dict[str, _Sandbox]) -> None:
    for sandbox_id, sandbox in list(sandboxes.items()):
        pid, status, usage = os.wait4(sandbox.pid, os.WNOHANG)
        if pid == 0:
            continue
        del sandboxes[sandbox_id]
        reason = _reason(sandbox, status, usage.ru_utime + usage.ru_stime)
        protocol.send(sock, {"op": "exit", "id": sandbox_id, "reason": reason})


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    # Everything imported so far is shared with every fork. Frozen, the collector of a fork never
    # walks (and so never copies) it: each sandbox costs fewer copied pages.
    gc.collect()
    gc.freeze()
    serve(sock)


if __name__ == "__main__":
    main()
