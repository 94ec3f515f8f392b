"""What ``cloister up`` checks before it starts any service: that tasks can be sandboxed on this
host and that every configured port is free, so a platform starts whole or says in one line why
not, instead of looking healthy while every task fails or dying with a service's traceback."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterable

from cloister.config import Settings
from cloister.errors import ConfigurationError
from cloister.executors.sandbox.host import SandboxUnavailableError, missing_requirement, probe
from cloister.executors.sandbox.requirements import check_host
from cloister.rpc.addresses import setting_of


class PreflightError(ConfigurationError):
    """The platform cannot start on this host as configured; the message says what to change."""


def check_sandbox(settings: Settings) -> None:
    """Check what the full task sandbox needs (root, capabilities, cgroups) and make one test
    sandbox the way the execution service will.

    Raises:
        PreflightError: something is missing or the sandbox cannot be made; the execution service
            would refuse to start, so no task could run.
    """
    try:
        if missing_requirement() is None:  # else probe() names what to install
            check_host()
        probe((settings.state_dir, settings.execution_work_dir))
    except SandboxUnavailableError as exc:
        raise PreflightError(
            f"{exc.reason}; every task, built-ins included, would fail, so nothing was started "
            "(the README's Requirements list what Cloister needs)"
        ) from None


def check_ports(settings: Settings, endpoints: Iterable[str], *, console: bool = False) -> None:
    """Listen once on every fixed port of ``endpoints``, and of the web console with ``console``
    (all together, so two that share a port are found too), then let go; port 0 is picked by the
    process and needs no check.

    Raises:
        PreflightError: a port is taken or cannot be listened on, naming it and its setting.
    """
    places = [(endpoint, settings.endpoint(endpoint), setting_of(endpoint)) for endpoint in endpoints]
    if console:
        places.append(("console", settings.console.address, "[console] address (CLOISTER_CONSOLE__ADDRESS)"))
    held: dict[tuple[str, int], str] = {}
    with contextlib.ExitStack() as sockets:
        for name, configured, setting in places:
            if configured.bind_port == 0:
                continue
            where = (configured.bind_host, configured.bind_port)
            if where in held:
                raise PreflightError(
                    f"port {configured.bind_port} is configured for both {held[where]} and {name}; change {setting}"
                )
            try:
                for listener in _listen(configured.bind_host, configured.bind_port):
                    sockets.enter_context(listener)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PreflightError(
                        f"port {configured.bind_port} ({name}) is already in use on {configured.bind_host}: "
                        f"stop what holds it, or change {setting}"
                    ) from None
                reason = exc.strerror or str(exc)
                raise PreflightError(
                    f"cannot listen on {configured.bind_address} ({name}): {reason}; change {setting}"
                ) from None
            held[where] = name


def _listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` means, as gRPC will bind them (SO_REUSEADDR, so
    that only a port someone listens on counts as taken, not one in TIME_WAIT; ``::`` dual-stack)."""
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(1)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners
