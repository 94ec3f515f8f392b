"""Messages between the execution service and its zygote: small JSON datagrams carrying descriptors."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

MAX_MESSAGE = 64 * 1024
MAX_FDS = 250


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError("sandbox message too large")
    socket.send_fds(sock, [data], list(fds))


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and its descriptors; None when the other side has gone."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not data:
        for fd in fds:
            _close(fd)
        return None
    return json.loads(data), fds


def _close(fd: int) -> None:
    import os

    with contextlib.suppress(OSError):
        os.close(fd)
