"""The template: a trusted process that no tenant code or data ever touches, forking one sandbox
per task.

Usage (by the execution service, inside bubblewrap): ``python -m cloister.executors.sandbox.zygote FD``
where FD is its end of a SOCK_SEQPACKET socket. It imports the runtimes once, answers ``ready``,
then for every ``prepare`` forks a *keeper* that joins the sandbox's cgroups, unshares every
namespace, mounts the sandbox's private file systems and forks the task's process as pid 1 of its
own pid namespace (see :mod:`isolation`, then :mod:`child`), which waits on its own channel for
its task. ``arm`` starts a sandbox's wall clock (its task has been handed over); ``cancel`` kills
it. The keeper waits for the task's process and exits with what became of it; killing the keeper
kills the task. Messages carry only what the service decided (limits, uid); the task itself
reaches the task's process directly, never through the template.
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

from cloister.executors.sandbox import protocol

CPU_EXCEEDED = 125
"""The keeper's exit code when the task was killed after using up its CPU time."""


@dataclass
class _Keeper:
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


def _reason(keeper: _Keeper, status: int) -> str | None:
    """Why the task ended abnormally, or None when its process exited on its own."""
    if keeper.killed_because:
        return keeper.killed_because
    if os.WIFSIGNALED(status):
        return f"the sandbox's keeper died ({signal.Signals(os.WTERMSIG(status)).name})"
    code = os.WEXITSTATUS(status)
    if code == CPU_EXCEEDED:
        return f"CPU time limit of {keeper.cpu_seconds} s exceeded"
    if code > 128:
        sig = code - 128
        if sig == signal.SIGXCPU:
            return f"CPU time limit of {keeper.cpu_seconds} s exceeded"
        if sig == signal.SIGXFSZ:
            return f"output size limit of {keeper.output_bytes} bytes exceeded"
        with contextlib.suppress(ValueError):
            return f"the function's process died ({signal.Signals(sig).name})"
        return f"the function's process died (signal {sig})"
    return None


def serve(sock: socket.socket) -> None:
    keepers: dict[str, _Keeper] = {}
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "socket")
    selector.register(wake_read, selectors.EVENT_READ, "child")
    protocol.send(sock, {"op": "ready", "pid": os.getpid()})
    keep = {sock.fileno(), wake_read, wake_write, selector.fileno()}  # type: ignore[attr-defined]
    while True:
        now = time.monotonic()
        timeout = min((k.deadline - now for k in keepers.values() if k.deadline < math.inf), default=None)
        for key, _ in selector.select(None if timeout is None else max(timeout, 0)):
            if key.data == "child":
                os.read(wake_read, 4096)
            else:
                received = protocol.receive(sock)
                if received is None:
                    for keeper in keepers.values():
                        _kill(keeper.pid)
                    return
                message, fds = received
                _handle(message, fds, keepers, keep)
        now = time.monotonic()
        for keeper in keepers.values():
            if keeper.deadline <= now and not keeper.killed_because:
                keeper.killed_because = f"wall time limit of {keeper.wall_seconds:g} s exceeded"
                _kill(keeper.pid)
        _reap(sock, keepers)


def _handle(message: dict[str, Any], fds: list[int], keepers: dict[str, _Keeper], keep: set[int]) -> None:
    keeper = keepers.get(message.get("id", ""))
    if message.get("op") == "cancel" and keeper is not None:
        keeper.killed_because = "canceled"
        _kill(keeper.pid)
    elif message.get("op") == "arm" and keeper is not None:
        keeper.deadline = time.monotonic() + keeper.wall_seconds
    elif message.get("op") == "prepare":
        limits = message["limits"]
        pid = os.fork()
        if pid == 0:
            _keeper(message, fds, keep)
        keepers[message["id"]] = _Keeper(
            pid, math.inf, limits["wall_seconds"], limits["cpu_seconds"], limits["output_bytes"]
        )
    for fd in fds:
        os.close(fd)


def _keeper(message: dict[str, Any], fds: list[int], keep: set[int]) -> None:
    """The forked keeper: isolate, fork the task's process, wait for it. Never returns."""
    from cloister.executors.sandbox import child, isolation

    code = 0
    try:
        # The template's signal plumbing is not the keeper's: its wakeup pipe is closed below.
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
        pid = os.fork()
        if pid == 0:
            child.run(channel, identity, message["limits"], memfd=message["memfd"])
        os.close(channel)
        _, status, usage = os.wait4(pid, 0)
        if os.WIFSIGNALED(status):
            used = usage.ru_utime + usage.ru_stime
            code = CPU_EXCEEDED if used >= message["limits"]["cpu_seconds"] else 128 + os.WTERMSIG(status)
        else:
            code = os.WEXITSTATUS(status)
    except BaseException as exc:  # the sandbox could not be made: say why on its channel
        with contextlib.suppress(BaseException):
            os.write(fds[message["cgroups"]], json.dumps({"failed": str(exc)}).encode())
        code = 0
    os._exit(code)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(sock: socket.socket, keepers: dict[str, _Keeper]) -> None:
    for task_id, keeper in list(keepers.items()):
        pid, status = os.waitpid(keeper.pid, os.WNOHANG)
        if pid == 0:
            continue
        del keepers[task_id]
        protocol.send(sock, {"op": "exit", "id": task_id, "reason": _reason(keeper, status)})


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
