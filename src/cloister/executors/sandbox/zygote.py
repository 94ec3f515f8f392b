"""The zygote: runs inside the sandbox, imports the runtimes once, forks one child per task.

Usage (by the execution service, inside bubblewrap): ``python -m cloister.executors.sandbox.zygote FD``
where FD is its end of a SOCK_SEQPACKET socket. It answers ``ready``, then for every ``run``
forks a child (see :mod:`child`), enforces the wall-time limit, kills on ``cancel``, and reports
each child's exit.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass

from cloister.executors.sandbox import protocol


@dataclass
class _Child:
    pid: int
    deadline: float
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


def _reason(child: _Child, status: int) -> str | None:
    """Why the child ended abnormally, or None when it exited on its own."""
    if child.killed_because:
        return child.killed_because
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return f"CPU time limit of {child.cpu_seconds} s exceeded"
        if sig == signal.SIGXFSZ:
            return f"output size limit of {child.output_bytes} bytes exceeded"
        return f"the function's process died ({signal.Signals(sig).name})"
    return None


def serve(sock: socket.socket) -> None:
    children: dict[str, _Child] = {}
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "socket")
    selector.register(wake_read, selectors.EVENT_READ, "child")
    protocol.send(sock, {"op": "ready", "pid": os.getpid()})
    while True:
        now = time.monotonic()
        timeout = min((c.deadline - now for c in children.values()), default=None)
        for key, _ in selector.select(None if timeout is None else max(timeout, 0)):
            if key.data == "child":
                os.read(wake_read, 4096)
            else:
                received = protocol.receive(sock)
                if received is None:
                    for child in children.values():
                        _kill(child.pid)
                    return
                message, fds = received
                _handle(sock, message, fds, children)
        now = time.monotonic()
        for child in children.values():
            if child.deadline <= now and not child.killed_because:
                child.killed_because = f"wall time limit of {child.wall_seconds:g} s exceeded"
                _kill(child.pid)
        _reap(sock, children)


def _handle(sock: socket.socket, message: dict, fds: list[int], children: dict[str, _Child]) -> None:
    if message.get("op") == "cancel":
        child = children.get(message["id"])
        if child is not None:
            child.killed_because = "canceled"
            _kill(child.pid)
        return
    if message.get("op") != "run":
        for fd in fds:
            os.close(fd)
        return
    limits = message["limits"]
    pid = os.fork()
    if pid == 0:
        sock.close()
        from cloister.executors.sandbox import child

        child.run(0, fds)
    for fd in fds:
        os.close(fd)
    children[message["id"]] = _Child(
        pid,
        time.monotonic() + limits["wall_seconds"],
        limits["wall_seconds"],
        limits["cpu_seconds"],
        limits["output_bytes"],
    )


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(sock: socket.socket, children: dict[str, _Child]) -> None:
    for task_id, child in list(children.items()):
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid == 0:
            continue
        del children[task_id]
        protocol.send(sock, {"op": "exit", "id": task_id, "reason": _reason(child, status)})


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    serve(sock)


if __name__ == "__main__":
    main()
