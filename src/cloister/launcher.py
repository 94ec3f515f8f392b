"""``cloister up``: provision the deployment, start the seven services, supervise, stop them.

Each service is its own process (``python -m cloister.serve NAME``), started in dependency
order; a service counts as started once it has published its ready file. Children die with the
launcher (``PR_SET_PDEATHSIG``) and are stopped in reverse order on Ctrl-C.

A service that exits without being asked to is started again (:meth:`Platform.supervise`): at
once the first time, then after jittered pauses, on the ports it first bound, so its peers find
it where they knew it; more than ``RESTART_BUDGET`` restarts within ``RESTART_WINDOW`` seconds
and the launcher gives up on it. Each service's restarts and start time are left in the state
directory for ``cloister status``, and so is what the platform was started with
(:class:`LaunchRecord`), so that ``cloister status`` checks this platform, not the defaults.

Before any service starts, :mod:`cloister.preflight` checks that tasks can be sandboxed here and
that the configured ports are free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cloister import preflight
from cloister.attestation.deployment import provision
from cloister.config import CONSOLE, ENDPOINTS, MEASURED, Settings
from cloister.errors import ConfigurationError
from cloister.rpc import addresses
from cloister.rpc.retry import Backoff
from cloister.serve import STANDBY

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
    CONSOLE,
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
stop before it: their last entries still reach the log. The console (``[console] enabled``)
starts after every service and stops first."""
RESTART_BUDGET = 5
RESTART_WINDOW = 60.0


def default_processes(settings: Settings) -> tuple[str, ...]:
    """What ``cloister up`` runs, in start order: every service, then the console if enabled."""
    return START_ORDER + ((CONSOLE,) if settings.console.enabled else ())


ENDPOINTS_OF = {
    "attestation": ("attestation",),
    "authentication": ("authentication_api", "authentication_internal"),
    "frontend": ("frontend",),
    "management": ("management",),
    "storage": ("storage",),
    "access_control": ("access_control",),
    "scheduler": ("scheduler",),
    "execution": (),
}
"""The endpoints each service listens on, kept across its restarts."""


def last_fatal_message(log: Path) -> str | None:
    """The message of the last CRITICAL record in a service's log (why it would not run), if any."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(handle.seek(0, os.SEEK_END) - 16384, 0))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") == "CRITICAL" and isinstance(record.get("message"), str):
            return str(record["message"])
    return None


def _tell(process: subprocess.Popen[bytes], lines: list[str]) -> bool:
    """Write ``lines`` to the standard input of ``process`` and close it; False if it has gone."""
    if not lines or process.stdin is None:
        return True
    try:
        process.stdin.write("".join(f"{line}\n" for line in lines).encode())
        process.stdin.close()
    except BrokenPipeError:
        _reap(process)
        return False
    return True


def _reap(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    process.wait()


class ServiceFailedError(ConfigurationError):
    """A service exited or did not become ready."""


LAUNCH_RECORD = "launch.json"


@dataclass(frozen=True)
class LaunchRecord:
    """What a platform was started with, kept in its state directory for ``cloister status``:
    the settings file and what the environment made of the settings status needs (never a secret)."""

    config_path: Path | None
    endpoints: Mapping[str, str]
    """Every endpoint as configured (``HOST:PORT``; port 0 means the one the service published)."""
    tee_backend: str
    console: str | None = None
    """The web console's address as configured, if ``cloister up`` started it."""

    @classmethod
    def of(cls, settings: Settings, config_path: Path | None, *, console: bool = False) -> LaunchRecord:
        endpoints = {name: settings.endpoint(name).address for name in ENDPOINTS}
        place = settings.console.address.address if console else None
        return cls(config_path.resolve() if config_path else None, endpoints, settings.tee_backend, place)

    def write(self, state_dir: Path) -> None:
        data = {
            "config": None if self.config_path is None else str(self.config_path),
            "endpoints": dict(self.endpoints),
            "tee_backend": self.tee_backend,
            "console": self.console,
        }
        path = state_dir / LAUNCH_RECORD
        temporary = path.with_name(f".{LAUNCH_RECORD}.tmp")
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)

    @classmethod
    def read(cls, state_dir: Path) -> LaunchRecord | None:
        """The record of the last start with this state directory, or None if it never started.

        Raises:
            ConfigurationError: the record is unreadable.
        """
        path = state_dir / LAUNCH_RECORD
        try:
            data = json.loads(path.read_text())
            config, endpoints, backend = data["config"], data["endpoints"], data["tee_backend"]
            console = data.get("console")  # absent from the records of older versions: no console
            if not (
                (console is None or isinstance(console, str))
                and (config is None or isinstance(config, str))
                and isinstance(endpoints, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in endpoints.items())
                and isinstance(backend, str)
            ):
                raise TypeError("unexpected types")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"{path} is unreadable ({exc}); start the platform again to rewrite it") from None
        return cls(None if config is None else Path(config), endpoints, backend, console)

    def environment(self) -> dict[str, str]:
        """The environment variables that give these endpoints and backend to ``load_settings``."""
        env = {f"CLOISTER_ENDPOINTS__{name.upper()}": address for name, address in self.endpoints.items()}
        env["CLOISTER_TEE_BACKEND"] = self.tee_backend
        env["CLOISTER_CONSOLE__ENABLED"] = "true" if self.console else "false"
        if self.console:
            env["CLOISTER_CONSOLE__ADDRESS"] = self.console
        return env


@dataclass
class _Launch:
    """How a process was started, to start it again the same way, and its restarts so far."""

    service: str
    instance: str | None
    extra_env: dict[str, str]
    restarts: list[float] = field(default_factory=list)
    """Monotonic times of the restarts within the last ``RESTART_WINDOW`` seconds."""
    total_restarts: int = 0
    due: float | None = None
    """When the exited process is to be started again; None while it runs."""
    backoff: Backoff = field(default_factory=lambda: Backoff(first=0.5, limit=10.0))


class Platform:
    """The seven service processes of one state directory."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        services: tuple[str, ...] | None = None,
    ) -> None:
        self.settings = settings
        self._config_path = config_path
        self._env = dict(os.environ if env is None else env)
        self._env["CLOISTER_STATE_DIR"] = str(settings.state_dir)
        # Only the authentication service needs it, once, and it gets it on its standard input:
        # no service's environment holds it.
        self._admin_password = self._env.pop("CLOISTER_ADMIN_PASSWORD", None)
        self._services = services if services is not None else default_processes(settings)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._launches: dict[str, _Launch] = {}
        self.given_up: dict[str, str] = {}
        """Services the launcher stopped restarting, and why."""
        self._guard = threading.RLock()
        self._supervising = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._lock_file: IO[str] | None = None
        self._standby: subprocess.Popen[bytes] | None = None
        """A process with the services' shared imports done, the next to start (``cloister.serve --standby``)."""

    @property
    def log_dir(self) -> Path:
        return self.settings.state_dir / "logs"

    def start(self, timeout: float = 60.0) -> None:
        """Check the host, then start every service in order and wait until each is ready.

        Raises:
            PreflightError: tasks cannot be sandboxed here, or a configured port is taken;
                nothing was started.
            ServiceFailedError: a service exited or did not become ready; the others are stopped.
        """
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.settings.state_dir, 0o700)
        self._lock()
        try:
            if "execution" in self._services:
                preflight.check_sandbox(self.settings)
            endpoints = [e for s in self._services for e in ENDPOINTS_OF.get(s, ())]
            preflight.check_ports(self.settings, endpoints, console=CONSOLE in self._services)
            for stale in self.settings.run_dir.glob("*"):
                if stale.name != "lock":
                    stale.unlink(missing_ok=True)
            provision(self.settings.attestation_dir, MEASURED, self.settings.attestation)
            record = LaunchRecord.of(self.settings, self._config_path, console=CONSOLE in self._services)
            record.write(self.settings.state_dir)
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
        process_name = self.settings.model_copy(update={"instance": instance or ""}).process_name(name)
        with self._guard:
            launch = self._launches.get(process_name)
            if launch is None or launch.extra_env != dict(extra_env or {}):
                launch = self._launches[process_name] = _Launch(name, instance, dict(extra_env or {}))
            self.given_up.pop(process_name, None)
            self._spawn(process_name, launch, timeout)

    def _spawn(self, process_name: str, launch: _Launch, timeout: float, pinned: Mapping[str, str] = {}) -> None:
        name, instance, extra_env = launch.service, launch.instance, {**launch.extra_env, **pinned}
        addresses.unmark_ready(self.settings, process_name)
        arguments = [name, "--state-dir", str(self.settings.state_dir)]
        if self._config_path is not None:
            arguments += ["--config", str(self._config_path)]
        if instance:
            arguments += ["--instance", instance]
        arguments += ["--log-file", str(self.log_dir / f"{process_name}.log"), "--launcher-pid", str(os.getpid())]
        password = self._admin_password if name == "authentication" else None
        if password:
            arguments.append("--admin-password-stdin")
        secret = [password] if password else []
        role = json.dumps({"argv": arguments, "env": extra_env})
        process = self._take_standby(extra_env)
        if process is None or not _tell(process, [role, *secret]):
            process = self._popen(arguments, extra_env, stdin=bool(secret))
            _tell(process, secret)
        self.processes[process_name] = process
        self._wait_ready(process_name, timeout)
        note = f"{launch.total_restarts} {time.time():.3f}"
        try:
            addresses.publish_note(self.settings, process_name, "supervision", note)
        except OSError as exc:  # a full disk costs `cloister status` its restart count, not the service
            logger.warning("cannot note the start of %s for cloister status: %s", process_name, exc.strerror)
        if self._standby is None:
            self._standby = self._popen(
                [STANDBY, "--state-dir", str(self.settings.state_dir), "--launcher-pid", str(os.getpid())],
                {},
                stdin=True,
            )

    def _take_standby(self, extra_env: Mapping[str, str]) -> subprocess.Popen[bytes] | None:
        """The standby, if it can become a service started with ``extra_env``.

        It can take settings (``CLOISTER_*``, read when the service loads them), not what acts
        when an interpreter starts (``PYTHONPATH``, say): a service given that starts afresh.
        """
        if self._standby is not None and self._standby.poll() is not None:
            _reap(self._standby)  # it died waiting (killed, say): reaped here, and replaced below
            self._standby = None
        if self._standby is None or not all(name.startswith("CLOISTER_") for name in extra_env):
            return None
        standby, self._standby = self._standby, None
        return standby

    def _popen(self, arguments: list[str], extra_env: Mapping[str, str], *, stdin: bool) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "cloister.serve", *arguments],
            env={**self._env, **extra_env},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait_ready(self, name: str, timeout: float) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if addresses.ready_pid(self.settings, name) == process.pid:
                return
            if process.poll() is not None:
                log = self.log_dir / f"{name}.log"
                reason = (last_fatal_message(log) or "").removeprefix("cannot run: ")
                raise ServiceFailedError(
                    f"{name} exited with status {process.returncode} while starting"
                    + (f": {reason}" if reason else "")
                    + f"; see {log}"
                )
            time.sleep(0.02)
        raise ServiceFailedError(f"{name} did not become ready within {timeout:.0f} s; see {self.log_dir}")

    def supervise(self, timeout: float = 60.0) -> None:
        """Start again every service that exited without being asked to; call it often.

        A restart keeps the service's ports, so peers that knew its address find it again. The
        first restart is immediate, the next ones wait jittered pauses; past the budget, the
        service is left stopped and named in :attr:`given_up`.
        """
        with self._guard:
            now = time.monotonic()
            for process_name, process in list(self.processes.items()):
                code = process.poll()
                launch = self._launches.get(process_name)
                if code is None or launch is None:
                    continue
                if launch.due is None:  # just found exited
                    launch.restarts = [t for t in launch.restarts if t > now - RESTART_WINDOW]
                    if len(launch.restarts) >= RESTART_BUDGET:
                        reason = f"exited with status {code} after {RESTART_BUDGET} restarts in {RESTART_WINDOW:.0f} s"
                        logger.error(
                            "giving up on %s: %s; see %s.log", process_name, reason, self.log_dir / process_name
                        )
                        self.given_up[process_name] = reason
                        del self.processes[process_name]
                        continue
                    if not launch.restarts:
                        launch.backoff.reset()
                    launch.restarts.append(now)
                    launch.total_restarts += 1
                    launch.due = now if len(launch.restarts) == 1 else now + launch.backoff.next()
                if now < launch.due:
                    continue
                launch.due = None
                self._restart(process_name, launch, code, timeout)

    def _restart(self, process_name: str, launch: _Launch, code: int, timeout: float) -> None:
        logger.warning(
            "%s exited with status %d; restarting it (restart %d)", process_name, code, launch.total_restarts
        )
        try:
            self._spawn(process_name, launch, timeout, self._pinned_ports(launch.service))
        except ServiceFailedError as exc:
            logger.error("restarting %s failed: %s", process_name, exc.message)  # counted when found exited again

    def _pinned_ports(self, service: str) -> dict[str, str]:
        """Environment that binds ``service`` again to the ports it picked itself (configured as 0)."""
        pinned = {}
        console = self.settings.console.address
        url = addresses.published(self.settings, CONSOLE) if service == CONSOLE else None
        if url is not None and console.port == 0:
            pinned["CLOISTER_CONSOLE__ADDRESS"] = f"{console.host}:{url.rpartition(':')[2]}"
        for endpoint in ENDPOINTS_OF.get(service, ()):
            configured = self.settings.endpoint(endpoint)
            address = addresses.published(self.settings, endpoint)
            if configured.port == 0 and address is not None:
                pinned[f"CLOISTER_ENDPOINTS__{endpoint.upper()}"] = f"{configured.host}:{address.rpartition(':')[2]}"
        return pinned

    def stop_service(self, name: str, timeout: float = 10.0) -> None:
        with self._guard:
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
        """SIGKILL, as a crash would, and leave it stopped (tests of durability and executor loss).

        To see the platform heal from a crash instead, kill the process by its pid
        (``processes[name].pid``): :meth:`supervise` starts it again."""
        with self._guard:
            process = self.processes.pop(name)
        process.kill()
        process.wait()
        addresses.unmark_ready(self.settings, name)

    def supervise_in_background(self, interval: float = 0.2) -> None:
        """Call :meth:`supervise` every ``interval`` seconds on a thread of its own until :meth:`stop`."""
        self._supervising.set()
        self._supervisor = threading.Thread(
            target=self._supervise_loop, args=(interval,), name="cloister-supervisor", daemon=True
        )
        self._supervisor.start()

    def _supervise_loop(self, interval: float) -> None:
        while self._supervising.is_set():
            try:
                self.supervise()
            except Exception:  # the supervisor must outlive any one failed restart
                logger.exception("supervising the services failed")
            time.sleep(interval)

    def stop(self) -> None:
        self._supervising.clear()  # nothing is restarted while the platform stops
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        self._supervisor = None

        def position(process_name: str) -> int:
            service = process_name.partition("-")[0]
            return STOP_ORDER.index(service) if service in STOP_ORDER else -1

        with self._guard:
            for name in sorted(self.processes, key=position):
                self.stop_service(name)
            if self._standby is not None:
                _reap(self._standby)
                self._standby = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def endpoint(self, name: str) -> str:
        return addresses.resolve(self.settings, name)

    def restarts(self) -> dict[str, int]:
        """How many times the launcher started each process again after it exited on its own."""
        with self._guard:
            return {name: launch.total_restarts for name, launch in self._launches.items()}

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
