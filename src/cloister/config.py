"""One settings object for the whole platform: a TOML file plus environment overrides, validated.

Only ``launcher`` and ``cli`` call :func:`load_settings`; everything else receives the frozen
:class:`Settings` it needs. Environment variables are read from the mapping passed in, never
from ``os.environ`` directly, so tests can hand in their own. Every setting is listed in
``docs/configuration.md`` (a test compares the two). A setting that is misspelled, of the wrong
type or out of range stops start-up with a :class:`~cloister.errors.ConfigurationError` naming
it and the value, before any service runs.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from cloister.errors import ConfigurationError
from cloister.model.executors import ExecutorKind

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

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

CONSOLE = "console"
"""The web console: a process ``cloister up`` runs beside the services, a client of the frontend."""

MEASURED = (*SERVICES, CONSOLE)
"""What a development deployment's ``enclave_info.toml`` lists: the seven services, and the
console, whose attested identity vouches for its users' addresses."""

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

TEE_BACKENDS = ("sim", "sgx", "tdx", "sev-snp", "nitro")
"""The backends ``tee_backend`` may name; ``cloister.attestation.backends`` says what each needs."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _not_a_boolean(value: object) -> object:
    """pydantic reads TOML's ``true`` as 1; a size or a time that says ``true`` is a mistake."""
    if isinstance(value, bool):
        raise ValueError("must be a number")
    return value


_Count = Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=1)]
"""A whole number of at least 1: a size, a count, a limit."""
_Seconds = Annotated[float, BeforeValidator(_not_a_boolean), Field(gt=0)]
"""A duration that must be longer than nothing."""
_MessageBytes = Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=1, le=2**31 - 1)]
"""gRPC takes message sizes as 32-bit signed integers."""


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError as exc:
        raise ValueError(f"must list networks such as 10.0.0.0/8 or fd00::/8 ({exc})") from None
    return value


def _executor_kind(value: str) -> str:
    kinds = [kind.value for kind in ExecutorKind]
    if value not in kinds:
        raise ValueError(f"must list executor kinds among {', '.join(kinds)}")
    return value


def _absolute(value: Path) -> Path:
    if not value.is_absolute():
        raise ValueError("must list absolute paths (a relative one would depend on where the service runs)")
    return value


class _Section(BaseModel):
    """A ``[section]`` of the settings: frozen, and refusing keys it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _host(value: str) -> str:
    """A DNS name or an IP address (IPv6 in brackets or bare), as peers dial it or a server binds it."""
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
        return value
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(
        0 < len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum() and label.isascii()
        for label in labels
    ):
        raise ValueError("must be a DNS name or an IP address")
    return value


_Host = Annotated[str, Field(min_length=1), AfterValidator(_host)]


def _split_host_port(value: str) -> tuple[str, int | None]:
    """``HOST:PORT`` or ``HOST`` (``[v6]:PORT`` for IPv6 with a port)."""
    if (value.startswith("[") and value.endswith("]")) or (value.count(":") > 1 and not value.startswith("[")):
        return value, None
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, None
    if not port.isdigit() or int(port) > 65535:
        raise ValueError("must look like HOST or HOST:PORT")
    return host, int(port)


def _listen(value: str) -> str:
    host, _ = _split_host_port(value)
    _host(host)
    return value


class EndpointSettings(_Section):
    """Where a service listens and where its peers reach it; port 0 picks a free port.

    ``host``/``port`` are the address peers dial (a DNS name or an IP address). A server binds
    that same address unless ``listen`` says otherwise: a container or a host behind NAT listens
    on ``0.0.0.0:7777`` and is dialled as ``frontend.example:7777``. Peers are authenticated by
    their attested service identity, never by the name they were dialled at.
    """

    host: _Host = "127.0.0.1"
    port: Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=0, le=65535)] = 0
    listen: Annotated[str, Field(min_length=1), AfterValidator(_listen)] | None = None
    """``HOST`` or ``HOST:PORT`` the server binds; by default ``host:port``. Without a port, ``port``."""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        """``"HOST:PORT"`` (the usual spelling) or a table with ``host`` and ``port``."""
        if not isinstance(value, str):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("must look like HOST:PORT")
        return {"host": host or "127.0.0.1", "port": int(port)}

    @property
    def address(self) -> str:
        """The address peers dial (the advertised one)."""
        return f"{self.host}:{self.port}"

    @property
    def bind_host(self) -> str:
        """The host the server binds: ``listen``'s, else the advertised one."""
        return self.host if self.listen is None else _split_host_port(self.listen)[0]

    @property
    def bind_port(self) -> int:
        """The port the server binds: ``listen``'s when it names one, else ``port``."""
        port = None if self.listen is None else _split_host_port(self.listen)[1]
        return self.port if port is None else port

    @property
    def bind_address(self) -> str:
        """``bind_host:bind_port``."""
        return f"{self.bind_host}:{self.bind_port}"


def _endpoint(name: str) -> EndpointSettings:
    return EndpointSettings(port=DEFAULT_PORTS[name])


class EndpointsSettings(_Section):
    """Every listening endpoint, by the names of :data:`ENDPOINTS`."""

    attestation: EndpointSettings = _endpoint("attestation")
    authentication_api: EndpointSettings = _endpoint("authentication_api")
    authentication_internal: EndpointSettings = _endpoint("authentication_internal")
    frontend: EndpointSettings = _endpoint("frontend")
    management: EndpointSettings = _endpoint("management")
    storage: EndpointSettings = _endpoint("storage")
    access_control: EndpointSettings = _endpoint("access_control")
    scheduler: EndpointSettings = _endpoint("scheduler")


class AdminSettings(_Section):
    user: Annotated[str, Field(min_length=1)] = "admin"
    password: SecretStr | None = None


class AuthenticationSettings(_Section):
    token_lifetime_seconds: _Count = 86_400
    argon2_time_cost: _Count = 2
    argon2_memory_kib: _Count = 19_456
    argon2_parallelism: _Count = 1
    """Password hashing: argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane)."""
    login_failures_per_user: _Count = 10
    login_failures_per_address: _Count = 100
    login_failure_window_seconds: _Seconds = 900.0
    """After that many failed logins within the window, logins for the user id (or from the
    client address) are refused until the oldest failure is older than the window."""

    @model_validator(mode="after")
    def _memory_per_lane(self) -> AuthenticationSettings:
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ValueError(
                f"argon2_memory_kib ({self.argon2_memory_kib}) must be at least 8 times "
                f"argon2_parallelism ({self.argon2_parallelism})"
            )
        return self


INTEL_PCS_URL = "https://api.trustedservices.intel.com"
"""Intel's Provisioning Certification Service, which serves every platform's collateral without an account."""
AMD_KDS_URL = "https://kdsintf.amd.com"
"""AMD's Key Distribution Service, which serves every chip's VCEK."""


def _endorsement_service_url(value: str) -> str:
    """Empty, an ``https`` URL, or an ``http`` URL on a loopback address (a local stand-in or PCCS)."""
    value = value.strip().rstrip("/")
    if not value:
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("must be an https URL such as https://pccs.example:8081") from None
    if parts.scheme == "https" and host:
        return value
    if parts.scheme == "http" and is_loopback_host(host):
        return value
    if parts.scheme == "http":
        raise ValueError("must be https unless it is on this machine (127.0.0.1, ::1, localhost)")
    raise ValueError("must be an https URL such as https://pccs.example:8081")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (as a URL names it, IPv6 without brackets) is this machine by its address or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AttestationSettings(_Section):
    enclave_info: Path | None = None
    """A deployment's signed identity file; by default ``cloister up`` measures and signs one."""
    auditor_signatures: tuple[Path, ...] = ()
    auditor_public_keys: tuple[Path, ...] = ()
    """PEM RSA public keys (PKCS#1 or SubjectPublicKeyInfo) of the auditors whose signatures count."""
    required_auditors: _Count = 1
    """At least 1: an identity file that no auditor signed is never trusted."""
    certificate_lifetime_seconds: _Seconds = 3600.0
    """How long a service certificate and its report are valid; renewed at two thirds of it."""
    max_report_age_seconds: _Seconds = 7200.0
    accepted_quote_statuses: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)] = ("OK",)
    pccs_url: Annotated[str, AfterValidator(_endorsement_service_url)] = INTEL_PCS_URL
    """Where the ``sgx`` and ``tdx`` backends fetch Intel's collateral for their quotes (a PCCS, or
    Intel's PCS itself); empty: not fetched, and the attestation service refuses their evidence."""
    amd_kds_url: Annotated[str, AfterValidator(_endorsement_service_url)] = AMD_KDS_URL
    """Where the ``sev-snp`` backend fetches its VCEK when the host supplies none; empty: not fetched."""
    collateral_timeout_seconds: _Seconds = 10.0
    """Longest a fetch of collateral or a VCEK may wait to connect, or between bytes of the answer."""
    verification_threads: _Count = max(2, os.cpu_count() or 1)
    """The attestation service verifies this many pieces of evidence at once, each in its own thread."""
    verification_queue: Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=0)] = 64
    """Endorse calls that may wait for a verification thread; one more is refused (RESOURCE_EXHAUSTED)."""

    @property
    def uses_provided_identities(self) -> bool:
        return self.enclave_info is not None


class AccessControlSettings(_Section):
    policy_dir: Path | None = None
    """Directory of the four policy files (``cloister policy init`` writes them); default: the packaged policy."""


STORAGE_BACKENDS = ("sqlite", "postgres")
"""The engines ``[storage] backend`` may name (``cloister.storage.engine`` opens them)."""


class StorageSettings(_Section):
    backend: str = "sqlite"
    """``sqlite`` (embedded, one storage process) or ``postgres`` (several storage replicas over one database)."""
    path: Path | None = None
    """SQLite's database file; defaults to ``<state_dir>/storage/cloister.db``."""
    dsn: SecretStr | None = None
    """PostgreSQL's connection string or URL (``postgresql://cloister@db.example:5432/cloister``); secret,
    since a DSN may carry a password, so no message repeats it."""
    dsn_password_file: Path | None = None
    """A file holding the PostgreSQL password (one line), so that it is in neither the file nor the environment."""

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in STORAGE_BACKENDS:
            raise ValueError(f"must be one of {', '.join(STORAGE_BACKENDS)}")
        return value

    @model_validator(mode="after")
    def _postgres_needs_a_dsn(self) -> StorageSettings:
        if self.backend == "postgres" and (self.dsn is None or not self.dsn.get_secret_value().strip()):
            raise ValueError(
                'backend = "postgres" needs [storage] dsn (CLOISTER_STORAGE__DSN), '
                "such as postgresql://cloister@db.example:5432/cloister"
            )
        return self


class SchedulerSettings(_Section):
    executor_timeout_seconds: _Seconds = 30.0
    """An execution service silent for this long is lost and its tasks fail."""
    lease_seconds: Annotated[float, BeforeValidator(_not_a_boolean), Field(ge=1.0, le=300.0)] = 10.0
    """With several schedulers, a standby takes over once the active one renewed nothing for this long."""


class AuditSettings(_Section):
    retention_days: Annotated[float, BeforeValidator(_not_a_boolean), Field(ge=0)] = 0.0
    """Entries older than this are exported and then deleted from storage; 0 keeps them all."""
    export_dir: Path | None = None
    """Where management exports entries before deleting them; defaults to ``<state_dir>/audit-export``."""
    retention_interval_seconds: _Seconds = 3600.0
    """How often management looks for entries past the retention."""


class SandboxLimits(_Section):
    """What one task's worker may use; a task over a limit fails with a reason naming it."""

    memory_bytes: _Count = 2 * 1024**3
    """Memory of the task: its address space (RLIMIT_AS) and, where a memory cgroup is available,
    everything it holds, its scratch and ``/dev/shm`` files and memfds included."""
    cpu_seconds: _Count = 300
    wall_seconds: _Seconds = 600.0
    open_files: _Count = 64
    output_bytes: _Count = 8 * 1024**3
    """Largest file the function may write (RLIMIT_FSIZE)."""
    log_bytes: _Count = 64 * 1024
    """Printed and logged output kept for the task's log; the rest is dropped."""
    wasm_fuel: _Count = 20_000_000_000
    pids: _Count = 128
    """Threads (and processes) the task may have at once."""
    scratch_bytes: _Count = 256 * 1024**2
    """Size of the task's private scratch tmpfs (its working directory, ``/tmp``)."""
    shm_bytes: _Count = 64 * 1024**2
    """Size of the task's private ``/dev/shm`` tmpfs."""
    first_task_uid: Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=1000)] = 1_500_000_000
    """Start of the host uids reserved for tasks (when the service runs as root): no user or
    file on the host may use ``first_task_uid`` … ``first_task_uid + task_uids - 1``."""
    task_uids: _Count = 65_536
    """How many task uids are reserved; each running or prepared sandbox holds one."""
    prepared_sandboxes: Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=0)] = 2
    """Sandboxes kept ready (isolated, waiting for a task), so isolation adds no latency; 0 makes
    each when its task arrives."""

    @model_validator(mode="after")
    def _uid_range_fits(self) -> SandboxLimits:
        if self.first_task_uid + self.task_uids > 2**32 - 2:
            raise ValueError(
                f"first_task_uid ({self.first_task_uid}) + task_uids ({self.task_uids}) must stay below "
                f"{2**32 - 2}, the largest uid"
            )
        return self


class ExecutionSettings(_Section):
    slots: _Count = os.cpu_count() or 1
    """Tasks run at once; by default one per core."""
    executors: Annotated[tuple[Annotated[str, AfterValidator(_executor_kind)], ...], Field(min_length=1)] = tuple(
        kind.value for kind in ExecutorKind
    )
    labels: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    heartbeat_seconds: _Seconds = 1.0
    schedulers: tuple[EndpointSettings, ...] = ()
    """Every scheduler replica's address (``HOST:PORT``), tried in turn until the active one answers;
    none (the default): the ``[endpoints] scheduler`` address."""
    work_dir: Path | None = None
    """Per-task scratch directories; defaults to ``<state_dir>/execution``, wiped after each task."""
    fusion_base_dir: Path | None = None
    """Where ``fusion:///TEACLAVE_FUSION_BASE/...`` files live; defaults to ``<state_dir>/fusion``."""
    file_roots: tuple[Annotated[Path, AfterValidator(_absolute)], ...] = ()
    """The only directories ``file://`` URLs may name; none (the default) disables ``file://``."""
    max_file_bytes: _Count = 64 * 1024**3
    """Largest file a task may download or upload."""
    transfer_timeout_seconds: _Seconds = 60.0
    """Longest silence allowed while connecting to, reading from or writing to a file URL."""
    allowed_networks: tuple[Annotated[str, AfterValidator(_network)], ...] = ()
    """Networks (CIDR) that http(s) file URLs may reach besides global addresses; none (the default) keeps
    loopback, private, link-local and every other internal address out of a task's reach."""
    payload_cache_bytes: _Count = 256 * 1024**2
    """Function payloads kept in memory between tasks, so that each crosses the wire once; 0 keeps none."""


MAX_LONG_POLL_SECONDS = 60.0
"""The longest a service holds one long poll, whatever the caller asks; the caller then asks again
(``cloister.rpc.long_poll``)."""
INTERNAL_HEADROOM_BYTES = 8 * 1024 * 1024
"""What a message between services may carry besides the largest request: a task handed out with
its function's payload also carries its arguments twice (in it and in its manifest, up to 2 MiB
each), and records, keys and seals."""


class RPCSettings(_Section):
    max_message_bytes: _MessageBytes = 4 * 1024 * 1024
    """Largest message on the public endpoints, as Teaclave's."""
    internal_max_message_bytes: _MessageBytes = 64 * 1024 * 1024
    """Largest message between services: what a request brings travels on in one (a payload in a
    storage commit, say), with some more alongside."""
    call_timeout_seconds: _Seconds = 30.0
    """Longest a call between services may take, however alive its peer (long polls set their own)."""
    peer_timeout_seconds: _Seconds = 4.0
    """How soon a call learns that its peer is gone (killed, stopped, unreachable): the connection
    is pinged while calls wait on it, and a peer that acknowledges nothing for this long is down.
    A slow but alive peer still acknowledges (pings are answered below the Python code)."""
    long_poll_seconds: Annotated[float, BeforeValidator(_not_a_boolean), Field(gt=0, le=MAX_LONG_POLL_SECONDS)] = 30.0
    """How long the services' own long polls wait before they are made again: an execution
    service's PullTaskWait, a scheduler's watches of the task queues (at most 60, the longest any
    service holds a long poll)."""

    @model_validator(mode="after")
    def _room_for_requests(self) -> RPCSettings:
        if self.internal_max_message_bytes < self.max_message_bytes + INTERNAL_HEADROOM_BYTES:
            raise ValueError(
                f"internal_max_message_bytes ({self.internal_max_message_bytes}) must exceed max_message_bytes"
                f" ({self.max_message_bytes}) by at least {INTERNAL_HEADROOM_BYTES} bytes: what a request"
                " brings is passed on between services with more alongside"
            )
        return self


class LoggingSettings(_Section):
    level: str = "INFO"
    max_bytes: Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=1024)] = 10 * 1024**2
    """A service's log file is rotated when it would grow past this many bytes."""
    backup_count: _Count = 5
    """Rotated log files kept per service; the oldest is deleted at the next rotation."""

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()


def _collector_url(value: str | None) -> str | None:
    """An http(s) URL of an OTLP/HTTP collector (spans carry timings and method names, nothing a tenant sent)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("must be an http(s) URL such as http://collector:4318/v1/traces") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL such as http://collector:4318/v1/traces")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConsoleSettings(_Section):
    """``[console]``: the web console ``cloister up`` starts, a client of the frontend like any user."""

    enabled: bool = True
    address: EndpointSettings = EndpointSettings(host="127.0.0.1", port=7780)
    """Where browsers reach it (``HOST:PORT``; port 0 picks a free one)."""
    certificate: Annotated[Path, AfterValidator(_absolute)] | None = None
    key: Annotated[Path, AfterValidator(_absolute)] | None = None
    """Its TLS certificate and key (PEM). Without them a self-signed certificate for ``address``
    is made once, in ``<state>/console``, and the banner names it."""
    plain_http: bool = False
    """Serve HTTP instead of HTTPS: for development, and only on a loopback address."""

    @model_validator(mode="after")
    def _safe_transport(self) -> ConsoleSettings:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("certificate and key go together: give both or neither")
        if self.plain_http and not _is_loopback(self.address.host):
            raise ValueError(
                "plain_http is allowed only on a loopback address (sign-ins would cross the network in clear)"
            )
        return self


class TracingSettings(_Section):
    """``[tracing]``: per-hop spans of every call between services (OpenTelemetry), off unless a destination is set."""

    file: Path | None = None
    """Append each span as one JSON line to this file (every service of the host may share it)."""
    otlp_endpoint: Annotated[str | None, AfterValidator(_collector_url)] = None
    """Also export spans to this OTLP/HTTP collector (needs the ``otlp`` extra installed)."""


class TeePolicySettings(_Section):
    """``[tee_policy]``: which hardware evidence is acceptable (``cloister.attestation.hardware.tee_policy``).

    The defaults are a production policy: real hardware only, an up-to-date TCB, no debug
    enclave or VM, no simulated evidence. Hex strings name measurements and signers.
    """

    platforms: tuple[Literal["sgx", "tdx", "sev-snp", "nitro", "sim"], ...] = ("sgx", "tdx", "sev-snp", "nitro")
    measurements: dict[str, dict[str, list[str]]] = {}
    """platform -> measurement name -> accepted values (hex); a name listed must match one of them."""
    signers: dict[str, list[str]] = {}
    """platform -> accepted signers (hex): SGX ``mr_signer``, SEV-SNP ``id_key_digest``."""
    min_tcb_status: str = "UpToDate"
    """The lowest vendor rating accepted (SGX, TDX), e.g. ``SWHardeningNeeded``."""
    min_tcb_levels: dict[str, dict[str, Annotated[int, Field(ge=0)]]] = {}
    """platform -> TCB component -> lowest version (SEV-SNP: ``boot_loader``, ``tee``, ``snp``, ``microcode``)."""
    tolerated_advisories: tuple[str, ...] = ()
    allow_debug: bool = False
    allow_simulated: bool = False
    max_evidence_age_seconds: Annotated[float, Field(gt=0)] | None = None
    """Oldest acceptable evidence that states when it was made (Nitro); None: not bounded."""

    @field_validator("measurements", "signers", "min_tcb_levels", mode="before")
    @classmethod
    def _json_from_environment(cls, value: Any) -> Any:
        """A table given in the environment is JSON (``{"sgx": ["ab12..."]}``)."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("must be a table (JSON in the environment)") from None
        return value


class Settings(BaseSettings):
    """Every setting, by section: ``settings.execution.slots``. Built by :func:`load_settings`."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        env_prefix="CLOISTER_",
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    state_dir: Path
    tee_backend: str = "sim"
    endpoints: EndpointsSettings = EndpointsSettings()
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
    tracing: TracingSettings = TracingSettings()
    tee_policy: TeePolicySettings = TeePolicySettings()
    console: ConsoleSettings = ConsoleSettings()
    instance: str = ""
    """Names one of several processes of the same service on a host (``--instance``); never from the file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the caller passes: :func:`load_settings` has merged the file and the environment."""
        return (init_settings,)

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("tee_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in TEE_BACKENDS:
            raise ValueError(f"must be one of {', '.join(TEE_BACKENDS)}")
        return value

    @field_validator("instance")
    @classmethod
    def _instance_name(cls, value: str) -> str:
        if value and not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError("must be letters, digits, '-' or '_'")
        return value

    def endpoint(self, name: str) -> EndpointSettings:
        if name not in ENDPOINTS:
            raise KeyError(name)
        endpoint: EndpointSettings = getattr(self.endpoints, name)
        return endpoint

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


SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}
"""``[section]`` name → its model."""

_ENVIRONMENT_ONLY = ("instance",)
"""Top-level settings a file may not set: each process of a service is given its own."""

_ALIASES = {"CLOISTER_ADMIN_USER": "CLOISTER_ADMIN__USER", "CLOISTER_ADMIN_PASSWORD": "CLOISTER_ADMIN__PASSWORD"}
"""The first admin's variables keep the names Teaclave's deployments use; they win over the long form."""

_IGNORED_WHEN_EMPTY = ("CLOISTER_STATE_DIR", "CLOISTER_TEE_BACKEND", *_ALIASES)


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$CLOISTER_STATE_DIR``, else ``$XDG_STATE_HOME/cloister``, else ``~/.local/state/cloister``."""
    if env.get("CLOISTER_STATE_DIR"):
        return Path(env["CLOISTER_STATE_DIR"])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cloister"


class _EnvironmentSource(EnvSettingsSource):
    """``CLOISTER_<SECTION>__<KEY>`` from the mapping handed in rather than ``os.environ``; a list
    setting is comma-separated there (``a,b``; empty for none), not JSON."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = {name.lower(): value for name, value in env.items()}
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._env

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        return value  # lists are split in __call__; a section or an endpoint is validated as the text it is

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        for section, items in values.items():
            if section not in SECTIONS or not isinstance(items, dict):
                continue
            for key, value in items.items():
                field = SECTIONS[section].model_fields.get(key)
                if field is not None and get_origin(field.annotation) is tuple and isinstance(value, str):
                    items[key] = [part.strip() for part in value.split(",") if part.strip()]
        return values


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    state_dir: Path | None = None,
) -> Settings:
    """Read ``path`` (TOML) and apply ``env`` overrides (``CLOISTER_<SECTION>__<KEY>``).

    Precedence, highest first: the ``state_dir`` argument, the environment, the file, defaults.

    Raises:
        ConfigurationError: the file is missing or not TOML, or a setting is unknown, of the wrong
            type or out of range; the message names every such setting and its value.
    """
    env = _environment(env or {})
    values = _read_file(path) if path is not None else {}
    for name, value in _EnvironmentSource(env)().items():
        if isinstance(value, dict) and isinstance(values.get(name), dict):
            values[name] = {**values[name], **value}
        elif not (isinstance(value, dict) and name in values):  # a file's non-table section is refused below
            values[name] = value
    if state_dir is not None:
        values["state_dir"] = state_dir
    elif "state_dir" not in values:
        values["state_dir"] = default_state_dir(env)
    # Refused here, not by pydantic: BaseSettings would take a key such as ``_cli_parse_args`` as an option.
    unknown = [
        _unknown([name], None, isinstance(values[name], dict), None)
        for name in values
        if name not in Settings.model_fields
    ]
    if unknown:
        raise ConfigurationError("; ".join(unknown))
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = dict.fromkeys(_describe(error, env) for error in exc.errors(include_url=False))
        raise ConfigurationError("; ".join(problems)) from None


def _environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables that count, each under its long name; unknown ``CLOISTER_<SECTION>__`` refused."""
    env = {name: value for name, value in env.items() if value or name not in _IGNORED_WHEN_EMPTY}
    for alias, name in _ALIASES.items():
        if alias in env:
            env[name] = env.pop(alias)
    for name in env:
        section, nested, _ = name.upper().removeprefix("CLOISTER_").partition("__")
        if name.upper().startswith("CLOISTER_") and nested and section.lower() not in SECTIONS:
            raise ConfigurationError(
                f"{name} names no section of the settings{_suggestion(section.lower(), SECTIONS)}; "
                f"the sections are {', '.join(SECTIONS)}"
            )
    return env


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"configuration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"configuration file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"configuration file {path} is not valid TOML: {exc}") from None
    for name in _ENVIRONMENT_ONLY:
        if name in data:
            raise ConfigurationError(
                f"{name} cannot be set in {path}: use CLOISTER_{name.upper()} or --{name} for each process"
            )
    return data


_REASONS = {
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "path_type": "must be a path",
}


def _describe(error: ErrorDetails, env: Mapping[str, str]) -> str:
    """One refused setting: its full name (``[execution] slots``), what it must be, and its value."""
    keys = [part for part in error["loc"] if isinstance(part, str)]
    section = keys[0] if keys and keys[0] in SECTIONS else None
    if not keys:
        return error["msg"]
    if section is None:
        name, variable = keys[0], f"CLOISTER_{keys[0].upper()}"
    elif len(keys) == 1:
        name, variable = f"[{section}]", f"CLOISTER_{section.upper()}"
    else:
        name, variable = f"[{section}] {'.'.join(keys[1:])}", f"CLOISTER_{section.upper()}__{keys[1].upper()}"
    if error["type"] == "extra_forbidden":
        return _unknown(keys, section, isinstance(error["input"], dict), variable if variable in env else None)
    context = error.get("ctx") or {}
    if error["type"] == "value_error":
        reason = str(context.get("error", error["msg"]))
    elif error["type"] in ("greater_than_equal", "greater_than", "less_than_equal", "too_short", "string_too_short"):
        reason = _bound(error["type"], context)
    else:
        reason = _REASONS.get(error["type"], error["msg"].replace("Input should be", "must be"))
    if len(keys) == 1 and section is not None and error["type"] == "value_error":
        return f"{name}: {reason}"  # a check across the section's settings; our reason names them, no value
    if _is_secret(keys):
        return f"{name} {reason} (the value is not shown)"
    if variable in env:
        return f"{name} {reason}, not {variable}={_clip(env[variable])}"
    return f"{name} {reason}, not {_clip(json.dumps(error['input'], default=str, ensure_ascii=False))}"


def _bound(kind: str, context: Mapping[str, Any]) -> str:
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "greater_than":
        return f"must be more than {context['gt']}"
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind == "too_short":
        return "must list at least one"
    return "must not be empty"


def _unknown(keys: list[str], section: str | None, is_table: bool, variable: str | None) -> str:
    where = f" ({variable})" if variable else ""
    if section is None:
        sections = ", ".join(SECTIONS)
        if is_table:
            return f"[{keys[0]}] is not a section{_suggestion(keys[0], SECTIONS)}; the sections are {sections}"
        known = [name for name in Settings.model_fields if name not in (*SECTIONS, *_ENVIRONMENT_ONLY)]
        return f"{keys[0]}{where} is not a setting{_suggestion(keys[0], known)}; known: {', '.join(known)}"
    model: type[BaseModel] = SECTIONS[section]
    for key in keys[1:-1]:
        annotation = model.model_fields[key].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    fields = list(model.model_fields)
    return (
        f"[{section}] {'.'.join(keys[1:])}{where} is not a setting{_suggestion(keys[-1], fields)}; "
        f"known: {', '.join(fields)}"
    )


def _suggestion(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _is_secret(keys: list[str]) -> bool:
    """Whether the value may hold a secret, which no message may repeat: a secret setting, or its whole section."""
    if not keys or keys[0] not in SECTIONS:
        return False
    fields = SECTIONS[keys[0]].model_fields
    candidates = [fields[keys[1]]] if len(keys) > 1 and keys[1] in fields else list(fields.values())
    return any("SecretStr" in str(field.annotation) for field in candidates)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
