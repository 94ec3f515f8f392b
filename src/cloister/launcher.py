"""``cloister up``: provision the deployment, start the seven services, supervise, stop them.

Each service is its own process (``python -m cloister service NAME``), started in dependency
order; a service counts as started once it has published its ready file. Children die with the
launcher (``PR_SET_PDEATHSIG``) and are stopped in reverse order on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from cloister.attestation.deployment import provision
from cloister.config import SERVICES, Settings
from cloister.errors import ConfigurationError
from cloister.rpc import addresses

logger = logging.getLogger(__name__)

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
STOP_ORDER = (
    "execution",
    "frontend",
    "scheduler",
    "authentication",
    "access_control",
    "management",
    "storage",
    "attestation",
)
"""Clients before their servers, except that the services shipping audit entries to management
stop before it: their last entries still reach the log."""
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServiceFailedError(ConfigurationError):
    """A service exited or did not become ready."""


class Platform:
    """The seven service processes of one state directory."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        services: tuple[str, ...] = START_ORDER,
    ) -> None:
        self.settings = settings
        self._config_path = config_path
        self._env = dict(os.environ if env is None else env)
        self._env["CLOISTER_STATE_DIR"] = str(settings.state_dir)
        # Only the authentication service needs it, once, and it gets it on its standard input:
        # no service's environment holds it.
        self._admin_password = self._env.pop("CLOISTER_ADMIN_PASSWORD", None)
        self._services = services
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock_file: IO[str] | None = None

    @property
    def log_dir(self) -> Path:
        return self.settings.state_dir / "logs"

    def start(self, timeout: float = 60.0) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.settings.state_dir, 0o700)
        self._lock()
        for stale in self.settings.run_dir.glob("*"):
            if stale.name != "lock":
                stale.unlink(missing_ok=True)
        provision(self.settings.attestation_dir, SERVICES, self.settings.attestation)
        try:
            for name in self._services:
                self.start_service(name, timeout)
        except BaseException:
            self.stop()
            raise

    def _lock(self) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.settings.run_dir / "lock", "w")  # noqa: SIM115 - held for the platform's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConfigurationError(
                f"another Cloister is already running with state directory {self.settings.state_dir}"
            ) from None
        self._lock_file = handle

    def start_service(
        self,
        name: str,
        timeout: float = 60.0,
        extra_env: Mapping[str, str] | None = None,
        instance: str | None = None,
    ) -> None:
        """Start one service and wait until it is ready; ``extra_env`` adds to its environment.

        With ``instance``, a further process of the service (e.g. a second execution service),
        known as ``name-instance`` here and in the state directory.
        """
        process_name = dataclasses.replace(self.settings, instance=instance or "").process_name(name)
        addresses.unmark_ready(self.settings, process_name)
        command = [sys.executable, "-m", "cloister", "service", name, "--state-dir", str(self.settings.state_dir)]
        if self._config_path is not None:
            command += ["--config", str(self._config_path)]
        if instance:
            command += ["--instance", instance]
        command += ["--log-file", str(self.log_dir / f"{process_name}.log")]
        password = self._admin_password if name == "authentication" else None
        if password:
            command.append("--admin-password-stdin")
        process = subprocess.Popen(
            command,
            env={**self._env, **(extra_env or {})},
            stdin=subprocess.PIPE if password else subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        if password and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(password.encode() + b"\n")
            process.stdin.close()
        self.processes[process_name] = process
        self._wait_ready(process_name, timeout)

    def _wait_ready(self, name: str, timeout: float) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if addresses.ready_pid(self.settings, name) == process.pid:
                return
            if process.poll() is not None:
                raise ServiceFailedError(
                    f"{name} exited with status {process.returncode} while starting; see {self.log_dir / name}.log"
                )
            time.sleep(0.02)
        raise ServiceFailedError(f"{name} did not become ready within {timeout:.0f} s; see {self.log_dir}")

    def stop_service(self, name: str, timeout: float = 10.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill_service(self, name: str) -> None:
        """SIGKILL, as a crash would (tests of durability and executor loss)."""
        process = self.processes.pop(name)
        process.kill()
        process.wait()
        addresses.unmark_ready(self.settings, name)

    def stop(self) -> None:
        def position(process_name: str) -> int:
            service = process_name.partition("-")[0]
            return STOP_ORDER.index(service) if service in STOP_ORDER else -1

        for name in sorted(self.processes, key=position):
            self.stop_service(name)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def endpoint(self, name: str) -> str:
        return addresses.resolve(self.settings, name)

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def admin_password_file(self) -> Path | None:
        path = self.settings.admin_password_path
        return path if path.exists() else None

    def __enter__(self) -> Platform:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
