"""One settings object for the whole platform: a TOML file plus environment overrides.

Only ``launcher`` and ``cli`` call :func:`load_settings`; everything else receives the frozen
:class:`Settings` it needs. Environment variables are read from the mapping passed in, never
from ``os.environ`` directly, so tests can hand in their own. Every variable is listed in
``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloister.errors import ConfigurationError
from cloister.model.executors import ExecutorKind

SERVICES = (
    "authentication",
    "frontend",
    "management",
    "storage",
    "access_control",
    "scheduler",
    "execution",
)
"""The seven services, each run as its own process."""

ATTESTATION_SERVICE = "attestation"
"""The attestation service plays Intel's IAS for a deployment; it is not one of the seven."""

DEFAULT_PORTS = {
    "attestation": 17781,
    "authentication_api": 7776,
    "authentication_internal": 17776,
    "frontend": 7777,
    "management": 17777,
    "storage": 17778,
    "access_control": 17779,
    "scheduler": 17780,
}
ENDPOINTS = tuple(DEFAULT_PORTS)
"""Every listening endpoint; the execution service has none. ``attestation`` is the attestation
service (the part Intel's IAS plays), which is not one of the seven platform services."""


class Secret:
    """A string that never shows itself in ``repr``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class EndpointSettings:
    """Where a service listens and where its peers reach it; port 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AdminSettings:
    user: str = "admin"
    password: Secret | None = None


@dataclass(frozen=True)
class AuthenticationSettings:
    token_lifetime_seconds: int = 86_400
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1
    """Password hashing: argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane)."""
    login_failures_per_user: int = 10
    login_failures_per_address: int = 100
    login_failure_window_seconds: float = 900.0
    """After that many failed logins within the window, logins for the user id (or from the
    client address) are refused until the oldest failure is older than the window."""

    def __post_init__(self) -> None:
        counts = ("token_lifetime_seconds", "argon2_time_cost", "argon2_parallelism", "login_failures_per_user")
        for name in (*counts, "login_failures_per_address"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"authentication.{name} must be at least 1")
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ConfigurationError("authentication.argon2_memory_kib must be at least 8 times argon2_parallelism")
        if not self.login_failure_window_seconds > 0:
            raise ConfigurationError("authentication.login_failure_window_seconds must be positive")


@dataclass(frozen=True)
class AttestationSettings:
    enclave_info: Path | None = None
    """A deployment's signed identity file; by default ``cloister up`` measures and signs one."""
    auditor_signatures: tuple[Path, ...] = ()
    auditor_public_keys: tuple[Path, ...] = ()
    """PEM RSA public keys (PKCS#1 or SubjectPublicKeyInfo) of the auditors whose signatures count."""
    required_auditors: int = 1
    certificate_lifetime_seconds: float = 3600.0
    """How long a service certificate and its report are valid; renewed at two thirds of it."""
    max_report_age_seconds: float = 7200.0
    accepted_quote_statuses: tuple[str, ...] = ("OK",)

    @property
    def uses_provided_identities(self) -> bool:
        return self.enclave_info is not None


@dataclass(frozen=True)
class AccessControlSettings:
    policy_dir: Path | None = None
    """Directory of the four policy files (``cloister policy init`` writes them); default: the packaged policy."""


@dataclass(frozen=True)
class StorageSettings:
    backend: str = "sqlite"
    path: Path | None = None
    """Database file; defaults to ``<state_dir>/storage/cloister.db``."""


@dataclass(frozen=True)
class SchedulerSettings:
    executor_timeout_seconds: float = 30.0
    """An execution service silent for this long is lost and its tasks fail."""


@dataclass(frozen=True)
class AuditSettings:
    retention_days: float = 0.0
    """Entries older than this are exported and then deleted from storage; 0 keeps them all."""
    export_dir: Path | None = None
    """Where management exports entries before deleting them; defaults to ``<state_dir>/audit-export``."""
    retention_interval_seconds: float = 3600.0
    """How often management looks for entries past the retention."""

    def __post_init__(self) -> None:
        if not self.retention_days >= 0:
            raise ConfigurationError("audit.retention_days must be 0 (keep every entry) or more")
        if not self.retention_interval_seconds > 0:
            raise ConfigurationError("audit.retention_interval_seconds must be positive")


@dataclass(frozen=True)
class SandboxLimits:
    """What one task's worker may use; a task over a limit fails with a reason naming it."""

    memory_bytes: int = 2 * 1024**3
    """Memory of the task: its address space (RLIMIT_AS) and, where a memory cgroup is available,
    everything it holds, its scratch and ``/dev/shm`` files and memfds included."""
    cpu_seconds: int = 300
    wall_seconds: float = 600.0
    open_files: int = 64
    output_bytes: int = 8 * 1024**3
    """Largest file the function may write (RLIMIT_FSIZE)."""
    log_bytes: int = 64 * 1024
    """Printed and logged output kept for the task's log; the rest is dropped."""
    wasm_fuel: int = 20_000_000_000
    pids: int = 128
    """Threads (and processes) the task may have at once."""
    scratch_bytes: int = 256 * 1024**2
    """Size of the task's private scratch tmpfs (its working directory, ``/tmp``)."""
    shm_bytes: int = 64 * 1024**2
    """Size of the task's private ``/dev/shm`` tmpfs."""
    first_task_uid: int = 1_500_000_000
    """Start of the host uids reserved for tasks (when the service runs as root): no user or
    file on the host may use ``first_task_uid`` … ``first_task_uid + task_uids - 1``."""
    task_uids: int = 65_536
    """How many task uids are reserved; each running or prepared sandbox holds one."""
    prepared_sandboxes: int = 2
    """Sandboxes kept ready (isolated, waiting for a task), so isolation adds no latency; 0 makes
    each when its task arrives."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if getattr(self, item.name) <= 0 and item.name != "prepared_sandboxes":
                raise ConfigurationError(f"setting sandbox.{item.name} must be positive")
        if self.first_task_uid < 1000 or self.first_task_uid + self.task_uids > 2**32 - 2:
            raise ConfigurationError(
                "sandbox.first_task_uid … first_task_uid + task_uids - 1 must be a free uid range above 999"
            )


@dataclass(frozen=True)
class ExecutionSettings:
    slots: int = field(default_factory=lambda: os.cpu_count() or 1)
    executors: tuple[str, ...] = tuple(kind.value for kind in ExecutorKind)
    labels: tuple[str, ...] = ()
    heartbeat_seconds: float = 1.0
    work_dir: Path | None = None
    """Per-task scratch directories; defaults to ``<state_dir>/execution``, wiped after each task."""
    fusion_base_dir: Path | None = None
    """Where ``fusion:///TEACLAVE_FUSION_BASE/...`` files live; defaults to ``<state_dir>/fusion``."""
    file_roots: tuple[Path, ...] = ()
    """The only directories ``file://`` URLs may name; none (the default) disables ``file://``."""
    max_file_bytes: int = 64 * 1024**3
    """Largest file a task may download or upload."""
    transfer_timeout_seconds: float = 60.0
    """Longest silence allowed while connecting to, reading from or writing to a file URL."""
    allowed_networks: tuple[str, ...] = ()
    """Networks (CIDR) that http(s) file URLs may reach besides global addresses; none (the default) keeps
    loopback, private, link-local and every other internal address out of a task's reach."""

    def __post_init__(self) -> None:
        if not isinstance(self.allowed_networks, tuple):
            raise ConfigurationError("setting execution.allowed_networks must be a list of networks")
        for network in self.allowed_networks:
            try:
                ipaddress.ip_network(network)
            except ValueError as exc:
                raise ConfigurationError(
                    f"setting execution.allowed_networks must list networks such as 10.0.0.0/8 or fd00::/8; "
                    f"{network!r} is not one ({exc})"
                ) from None


@dataclass(frozen=True)
class RPCSettings:
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest message on the public endpoints, as Teaclave's."""
    internal_max_message_bytes: int = 64 * 1024 * 1024
    """Largest message between services: a staged task carries its arguments and payload twice."""
    call_timeout_seconds: float = 30.0
    """Longest a call between services may take, however alive its peer (long polls set their own)."""
    peer_timeout_seconds: float = 4.0
    """How soon a call learns that its peer is gone (killed, stopped, unreachable): the connection
    is pinged while calls wait on it, and a peer that acknowledges nothing for this long is down.
    A slow but alive peer still acknowledges (pings are answered below the Python code)."""

    def __post_init__(self) -> None:
        for name in ("call_timeout_seconds", "peer_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"rpc.{name} must be positive")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "console"
    max_bytes: int = 10 * 1024**2
    """A service's log file is rotated when it would grow past this many bytes."""
    backup_count: int = 5
    """Rotated log files kept per service; the oldest is deleted at the next rotation."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1024:
            raise ConfigurationError("setting logging.max_bytes must be at least 1024")
        if self.backup_count < 1:
            raise ConfigurationError("setting logging.backup_count must be at least 1")


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    tee_backend: str = "sim"
    endpoints: Mapping[str, EndpointSettings] = field(default_factory=dict)
    admin: AdminSettings = AdminSettings()
    authentication: AuthenticationSettings = AuthenticationSettings()
    attestation: AttestationSettings = AttestationSettings()
    access_control: AccessControlSettings = AccessControlSettings()
    storage: StorageSettings = StorageSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    audit: AuditSettings = AuditSettings()
    execution: ExecutionSettings = ExecutionSettings()
    sandbox: SandboxLimits = SandboxLimits()
    rpc: RPCSettings = RPCSettings()
    logging: LoggingSettings = LoggingSettings()
    instance: str = ""
    """Names one of several processes of the same service on a host (``--instance``)."""

    def endpoint(self, name: str) -> EndpointSettings:
        return self.endpoints[name]

    @property
    def database_path(self) -> Path:
        return self.storage.path or self.state_dir / "storage" / "cloister.db"

    @property
    def storage_key_path(self) -> Path:
        """The key the storage service seals values with (0600)."""
        return self.state_dir / "storage" / "storage.key"

    @property
    def admin_password_path(self) -> Path:
        """Where a generated first-admin password is written once (0600)."""
        return self.state_dir / "admin-password"

    def process_name(self, service: str) -> str:
        """``service``, or ``service-instance`` for one of several processes of it."""
        return f"{service}-{self.instance}" if self.instance else service

    @property
    def execution_work_dir(self) -> Path:
        return self.execution.work_dir or self.state_dir / self.process_name("execution")

    @property
    def fusion_base_dir(self) -> Path:
        return self.execution.fusion_base_dir or self.state_dir / "fusion"

    @property
    def audit_export_dir(self) -> Path:
        return self.audit.export_dir or self.state_dir / "audit-export"

    @property
    def attestation_dir(self) -> Path:
        return self.state_dir / "attestation"

    @property
    def run_dir(self) -> Path:
        """Where running services publish the addresses they bound."""
        return self.state_dir / "run"


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$CLOISTER_STATE_DIR``, else ``$XDG_STATE_HOME/cloister``, else ``~/.local/state/cloister``."""
    if env.get("CLOISTER_STATE_DIR"):
        return Path(env["CLOISTER_STATE_DIR"])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cloister"


_SECTIONS: dict[str, type[Any]] = {
    "admin": AdminSettings,
    "authentication": AuthenticationSettings,
    "attestation": AttestationSettings,
    "access_control": AccessControlSettings,
    "storage": StorageSettings,
    "scheduler": SchedulerSettings,
    "audit": AuditSettings,
    "execution": ExecutionSettings,
    "sandbox": SandboxLimits,
    "rpc": RPCSettings,
    "logging": LoggingSettings,
}


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    text = str(annotation)
    if isinstance(value, str):
        if "Secret" in text:
            return Secret(value)
        if "tuple" in text:
            parts = tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(Path(p) for p in parts) if "Path" in text else parts
        if "bool" in text:
            return value.lower() in ("1", "true", "yes", "on")
        if text.startswith("int"):
            return _to_number(int, value, name)
        if "float" in text:
            return _to_number(float, value, name)
        if "Path" in text:
            return Path(value)
        return value
    if "tuple" in text and isinstance(value, list):
        return tuple(Path(v) for v in value) if "Path" in text else tuple(str(v) for v in value)
    if "Path" in text and value is not None:
        return Path(value)
    if "Secret" in text and value is not None:
        return Secret(str(value))
    return value


def _to_number(kind: type, value: str, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(f"setting {name} must be a number, got {value!r}") from None


def _build_section(cls: type[Any], values: Mapping[str, Any], section: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigurationError(f"unknown setting [{section}] {key}")
        kwargs[key] = _coerce(value, fields[key].type, f"{section}.{key}")
    return cls(**kwargs)


def _parse_endpoint(name: str, value: Any) -> EndpointSettings:
    if isinstance(value, Mapping):
        return EndpointSettings(host=str(value.get("host", "127.0.0.1")), port=int(value.get("port", 0)))
    host, sep, port = str(value).rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"endpoint {name} must look like HOST:PORT, got {value!r}")
    return EndpointSettings(host=host or "127.0.0.1", port=int(port))


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    state_dir: Path | None = None,
) -> Settings:
    """Read ``path`` (TOML) and apply ``env`` overrides (``CLOISTER_<SECTION>__<KEY>``).

    Precedence, highest first: the ``state_dir`` argument, the environment, the file, defaults.
    """
    env = dict(env if env is not None else {})
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigurationError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"configuration file {path} is not valid TOML: {exc}") from None

    sections: dict[str, dict[str, Any]] = {name: dict(data.get(name, {})) for name in (*_SECTIONS, "endpoints")}
    unknown = set(data) - set(sections) - {"state_dir", "tee_backend"}
    if unknown:
        raise ConfigurationError(f"unknown configuration sections: {', '.join(sorted(unknown))}")
    for key, value in env.items():
        if not key.startswith("CLOISTER_") or "__" not in key:
            continue
        section, _, name = key[len("CLOISTER_") :].lower().partition("__")
        if section in sections:
            sections[section][name] = value
    if env.get("CLOISTER_ADMIN_USER"):
        sections["admin"]["user"] = env["CLOISTER_ADMIN_USER"]
    if env.get("CLOISTER_ADMIN_PASSWORD"):
        sections["admin"]["password"] = env["CLOISTER_ADMIN_PASSWORD"]

    endpoints = {name: EndpointSettings(port=port) for name, port in DEFAULT_PORTS.items()}
    for name, value in sections.pop("endpoints").items():
        if name not in endpoints:
            raise ConfigurationError(f"unknown endpoint {name!r}; known: {', '.join(ENDPOINTS)}")
        endpoints[name] = _parse_endpoint(name, value)

    if state_dir is None:
        if data.get("state_dir") and not env.get("CLOISTER_STATE_DIR"):
            state_dir = Path(data["state_dir"]).expanduser()
        else:
            state_dir = default_state_dir(env)
    tee_backend = env.get("CLOISTER_TEE_BACKEND") or data.get("tee_backend", "sim")
    instance = env.get("CLOISTER_INSTANCE", "")
    if instance and not instance.replace("-", "").replace("_", "").isalnum():
        raise ConfigurationError(f"instance name {instance!r} must be letters, digits, '-' or '_'")
    return Settings(
        state_dir=Path(state_dir).expanduser().resolve(),
        tee_backend=str(tee_backend),
        endpoints=endpoints,
        instance=instance,
        **{name: _build_section(cls, sections[name], name) for name, cls in _SECTIONS.items()},
    )
