"""Services of a deployment's hosts started as a host's operator starts them: ``cloister service NAME
--config STATE/cloister.toml``, each its own process, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cloister_cli import clean_environment, cloister_command

from cloister.sdk import AuthenticationService, FrontendService, FunctionArgument

START_ORDER = (
    "attestation",
    "storage",
    "access_control",
    "authentication",
    "management",
    "scheduler",
    "frontend",
    "execution",
)


@dataclass
class HostProcesses:
    """Every service process started here, in start order, so they stop in reverse."""

    started: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(
        self, service: str, state_dir: Path, prefix: Sequence[str] = (), timeout: float = 60.0
    ) -> subprocess.Popen[bytes]:
        """Start ``service`` of the host whose state is ``state_dir`` and wait until it says it is ready.

        ``prefix`` runs the command inside something, e.g. ``ip netns exec HOST``.
        """
        log = state_dir / "logs" / f"{service}.log"
        log.parent.mkdir(exist_ok=True)
        command = [
            *prefix,
            cloister_command(),
            "service",
            service,
            "--config",
            str(state_dir / "cloister.toml"),
            "--log-file",
            str(log),
        ]
        process = subprocess.Popen(command, env=clean_environment(), stdin=subprocess.DEVNULL)
        self.started.append((service, process, state_dir))
        ready = state_dir / "run" / f"{service}.ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists() and ready.read_text().strip():
                return process
            if process.poll() is not None:
                raise AssertionError(f"{service} exited with {process.returncode}:\n{_tail(log)}")
            time.sleep(0.05)
        raise AssertionError(f"{service} was not ready within {timeout} s:\n{_tail(log)}")

    def stop(self) -> None:
        for _, process, _ in reversed(self.started):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
        self.started.clear()


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except FileNotFoundError:
        return "(no log)"


def run_echo(deployment: Path, authentication: str, frontend: str, password: str, message: str) -> bytes:
    """An echo task run as the admin of the deployment in ``deployment`` through the Teaclave-style
    SDK, trusting only the deployment's attestation files; its result."""
    root_ca = str(deployment / "attestation" / "as_root_ca.pem")
    enclave_info = str(deployment / "attestation" / "enclave_info.toml")
    auth = AuthenticationService(authentication, root_ca, enclave_info)
    client = FrontendService(frontend, root_ca, enclave_info)
    try:
        auth.user_login("admin", password)
        client.metadata = dict(auth.metadata or {})
        function_id = client.register_function(
            "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
        )
        task_id = client.create_task(function_id, {"message": message}, "builtin")
        client.invoke_task(task_id)
        return client.get_task_result(task_id)
    finally:
        auth.close()
        client.close()
