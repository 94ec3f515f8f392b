"""A deployment across hosts: the plan (which host runs which service, at which address), the
deployment directory ``cloister deploy init`` creates once, and the bundle each host joins with.

The deployment directory holds every secret of the deployment (the attestation root CA's key,
the auditor's key, the storage sealing key) and never leaves the operator's machine; a bundle
holds the public trust material, the one host's settings and the private keys of the services
that host runs, nothing more. Bundles are unpacked with :func:`unpack_bundle`, which accepts
regular files and directories under the target only.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import stat
import tarfile
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cloister.attestation.deployment import provision
from cloister.config import (
    ATTESTATION_SERVICE,
    DEFAULT_PORTS,
    ENDPOINTS,
    SERVICES,
    TEE_BACKENDS,
    EndpointSettings,
    load_settings,
)
from cloister.crypto.sealing import load_or_create_key
from cloister.errors import CloisterError, ConfigurationError
from cloister.launcher import ENDPOINTS_OF

PLAN_FILE = "hosts.toml"
"""The plan as ``deploy init`` read it, in the deployment directory."""
CONFIG_FILE = "cloister.toml"
"""A host's settings, in its bundle and its state directory."""
DEFAULT_STATE_DIR = Path("/var/lib/cloister")
ALL_SERVICES = (ATTESTATION_SERVICE, *SERVICES)

_ATTESTATION = "attestation"
_STORAGE_KEY = PurePosixPath("storage/storage.key")
_PUBLIC = ("as_root_ca.pem", "deployment_ca.pem", "platform_signing.pub.pem", "enclave_info.toml")
"""Trust material every host gets: what a service checks its peers and the identity file against."""
_ATTESTATION_SECRETS = ("as_root_ca.key", "report_signer.key", "deployment_ca.key")
_ATTESTATION_PUBLIC = ("report_signer.pem", "sim_quoting.pub.pem")
_SIM_QUOTING_KEY = "sim_quoting.key"
"""The simulated CPU's attestation key: on ``sim`` every host that runs a service needs it, as
every real CPU has its own; with hardware backends it does not exist."""
_BUNDLE_PLACES = (CONFIG_FILE, _ATTESTATION, "storage")
"""What a bundle may write into a state directory, and nothing else."""
_PLANNED_SETTINGS = {"endpoints", "state_dir", "tee_backend", "instance"}
_MAX_BUNDLE_BYTES = 16 * 1024 * 1024
_MAX_MEMBERS = 256


@dataclass(frozen=True)
class HostPlan:
    """One host: the address its peers dial, where its servers bind, the services it runs."""

    name: str
    address: str
    services: tuple[str, ...]
    listen: str | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Further settings for this host only, as TOML tables (``[hosts.NAME.settings.execution]``)."""


@dataclass(frozen=True)
class DeploymentPlan:
    """Every host of a deployment and the ports its endpoints use."""

    hosts: Mapping[str, HostPlan]
    ports: Mapping[str, int]
    advertise: Mapping[str, str]
    """Endpoint -> ``HOST:PORT`` peers dial instead of the one host's address (a load-balanced
    name in front of several replicas)."""
    tee_backend: str = "sim"

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str) -> DeploymentPlan:
        """The plan in ``data`` (a hosts file's TOML), checked.

        Raises:
            ConfigurationError: naming what is wrong and where.
        """
        known = {"hosts", "ports", "advertise", "tee_backend", "state_dir"}
        _no_unknown(data, known, source)
        tee_backend = _string(data.get("tee_backend", "sim"), f"{source}: tee_backend")
        if tee_backend not in TEE_BACKENDS:
            raise ConfigurationError(f"{source}: tee_backend must be one of {', '.join(TEE_BACKENDS)}")
        state_dir = _absolute(data.get("state_dir", str(DEFAULT_STATE_DIR)), f"{source}: state_dir")
        ports = dict(DEFAULT_PORTS)
        for name, port in _table(data.get("ports", {}), f"{source}: [ports]").items():
            if name not in ENDPOINTS:
                raise ConfigurationError(
                    f"{source}: [ports] {name} is not an endpoint; endpoints: {', '.join(ENDPOINTS)}"
                )
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise ConfigurationError(f"{source}: [ports] {name} must be a port number (1-65535), not {port!r}")
            ports[name] = port
        advertise = {}
        for name, address in _table(data.get("advertise", {}), f"{source}: [advertise]").items():
            if name not in ENDPOINTS:
                raise ConfigurationError(f"{source}: [advertise] {name} is not an endpoint")
            host, sep, port = _string(address, f"{source}: [advertise] {name}").rpartition(":")
            if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ConfigurationError(f"{source}: [advertise] {name} must look like HOST:PORT, not {address!r}")
            _check_host(host, f"{source}: [advertise] {name}")
            advertise[name] = address
        hosts = {}
        for name, table in _table(data.get("hosts", {}), f"{source}: [hosts]").items():
            where = f"{source}: [hosts.{name}]"
            if not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
                raise ConfigurationError(f"{where}: a host name must be letters, digits, '-' or '_'")
            table = _table(table, where)
            _no_unknown(table, {"address", "listen", "services", "state_dir", "settings"}, where)
            address = _string(table.get("address"), f"{where} address")
            _check_host(address, f"{where} address")
            listen = table.get("listen")
            if listen is not None:
                _check_host(_string(listen, f"{where} listen"), f"{where} listen")
            elif not _is_ip(address):
                listen = "0.0.0.0"  # noqa: S104 - a named host is dialled by a name that may resolve elsewhere
            services = table.get("services")
            if not isinstance(services, list) or not services or not all(isinstance(s, str) for s in services):
                raise ConfigurationError(f'{where} services must list services, e.g. ["storage", "management"]')
            for service in services:
                if service not in ALL_SERVICES:
                    raise ConfigurationError(
                        f"{where} services: {service!r} is not a service; services: {', '.join(ALL_SERVICES)}"
                    )
            settings = _table(table.get("settings", {}), f"{where} settings")
            planned = sorted(set(settings) & _PLANNED_SETTINGS)
            if planned:
                raise ConfigurationError(
                    f"{where} settings: {planned[0]} comes from the plan itself (address, listen, [ports], "
                    "[advertise], state_dir, tee_backend); set it there"
                )
            hosts[name] = HostPlan(
                name,
                address,
                tuple(dict.fromkeys(services)),
                listen,
                _absolute(table.get("state_dir", str(state_dir)), f"{where} state_dir"),
                settings,
            )
        plan = cls(hosts, ports, advertise, tee_backend)
        plan._check_placement(source)
        return plan

    @classmethod
    def from_options(cls, hosts: Iterable[str]) -> DeploymentPlan:
        """The plan given as ``NAME=ADDRESS:SERVICE,SERVICE`` options, with default ports."""
        table: dict[str, Any] = {}
        for option in hosts:
            name, sep, rest = option.partition("=")
            address, colon, services = rest.rpartition(":")
            if not (sep and colon and name and address and services):
                raise ConfigurationError(f"--host {option!r} must look like NAME=ADDRESS:SERVICE,SERVICE,...")
            table[name] = {"address": address, "services": [s.strip() for s in services.split(",") if s.strip()]}
        return cls.parse({"hosts": table}, "--host")

    def _check_placement(self, source: str) -> None:
        if not self.hosts:
            raise ConfigurationError(f"{source}: no [hosts]; a deployment needs at least one")
        runs: dict[str, list[str]] = {service: [] for service in ALL_SERVICES}
        for host in self.hosts.values():
            for service in host.services:
                runs[service].append(host.name)
        missing = [service for service, hosts in runs.items() if not hosts]
        if missing:
            raise ConfigurationError(f"{source}: no host runs {', '.join(missing)}; place every service on a host")
        for service, hosts in runs.items():
            shared = [e for e in ENDPOINTS_OF[service] if e not in self.advertise]
            if len(hosts) > 1 and shared:
                raise ConfigurationError(
                    f"{source}: {service} is placed on {', '.join(hosts)}, but its peers dial one address: "
                    f'run it on one host, or give [advertise] {shared[0]} = "NAME:PORT" (a name that reaches '
                    "every replica)"
                )
        if len(runs["authentication"]) > 1:
            raise ConfigurationError(
                f"{source}: authentication is placed on {', '.join(runs['authentication'])}, but its user "
                "database and token key live on its host: run it on one host"
            )
        on_sqlite = [
            h for h in runs["storage"] if self.hosts[h].settings.get("storage", {}).get("backend") != "postgres"
        ]
        if len(runs["storage"]) > 1 and on_sqlite:
            raise ConfigurationError(
                f"{source}: storage is placed on {', '.join(runs['storage'])}, but on {on_sqlite[0]} it keeps its "
                'own SQLite database: replicas of storage need settings = { storage = { backend = "postgres", '
                "dsn = ... } } on every storage host"
            )
        for host in self.hosts.values():
            taken: dict[int, str] = {}
            for service in host.services:
                for endpoint in ENDPOINTS_OF[service]:
                    port = self.ports[endpoint]
                    if port in taken:
                        raise ConfigurationError(
                            f"{source}: host {host.name} would listen on port {port} for both {taken[port]} and "
                            f"{endpoint}; change [ports]"
                        )
                    taken[port] = endpoint

    def host_of(self, endpoint: str) -> HostPlan:
        service = next(s for s, endpoints in ENDPOINTS_OF.items() if endpoint in endpoints)
        return next(h for h in self.hosts.values() if service in h.services)

    def endpoint_address(self, endpoint: str) -> tuple[str, int]:
        """Where every peer dials ``endpoint``."""
        if endpoint in self.advertise:
            host, _, port = self.advertise[endpoint].rpartition(":")
            return host, int(port)
        return self.host_of(endpoint).address, self.ports[endpoint]

    def to_toml(self) -> str:
        """The plan, written back in the hosts file's own format."""
        data: dict[str, Any] = {"tee_backend": self.tee_backend, "ports": dict(self.ports)}
        if self.advertise:
            data["advertise"] = dict(self.advertise)
        data["hosts"] = {
            host.name: {
                "address": host.address,
                **({"listen": host.listen} if host.listen else {}),
                "services": list(host.services),
                "state_dir": str(host.state_dir),
                **({"settings": dict(host.settings)} if host.settings else {}),
            }
            for host in self.hosts.values()
        }
        return "# The deployment's plan, as `cloister deploy init` read it.\n" + render_toml(data)

    def host_config(self, name: str, services: tuple[str, ...], state_dir: Path | None = None) -> str:
        """The settings file of host ``name`` running ``services``: every peer's address, its own listeners."""
        host = self.hosts[name]
        own = {endpoint for service in services for endpoint in ENDPOINTS_OF[service]}
        endpoints: dict[str, Any] = {}
        for endpoint in ENDPOINTS:
            dial_host, port = self.endpoint_address(endpoint)
            entry: dict[str, Any] = {"host": dial_host, "port": port}
            if endpoint in own:
                listen_host = host.listen or host.address
                entry["listen"] = f"{_bracketed(listen_host)}:{self.ports[endpoint]}"
            endpoints[endpoint] = entry
        data: dict[str, Any] = {
            "state_dir": str(state_dir or host.state_dir),
            "tee_backend": self.tee_backend,
            "endpoints": endpoints,
        }
        for section, values in host.settings.items():
            data[section] = values
        header = (
            f"# Settings of host {name!r} of a deployment made by `cloister deploy init`.\n"
            f"# It runs: {', '.join(services)}. Start each with: cloister service NAME --config THIS_FILE\n"
        )
        return header + render_toml(data)


def read_plan(path: Path) -> DeploymentPlan:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"hosts file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"hosts file {path} cannot be read: {exc}") from None
    return DeploymentPlan.parse(data, str(path))


# --- deploy init -----------------------------------------------------------------------


def init_deployment(directory: Path, plan: DeploymentPlan, force: bool = False) -> None:
    """Create the deployment in ``directory``: trust material, signed identities, every host's settings.

    Raises:
        ConfigurationError: ``directory`` already holds a deployment (and not ``force``), or a
            host's settings would not load.
    """
    ours = (PLAN_FILE, _ATTESTATION, "secrets", "hosts")
    existing = [name for name in ours if (directory / name).exists() or (directory / name).is_symlink()]
    if existing and not force:
        raise ConfigurationError(
            f"{directory} already holds a deployment ({', '.join(existing)}); use --force to replace it "
            "(every host then needs a new bundle)"
        )
    for name in plan.hosts:  # checked before anything is written
        _check_host_config(plan, name)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for entry in existing:
        path = directory / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    provision(directory / _ATTESTATION, SERVICES)
    os.chmod(directory / _ATTESTATION / "auditors", 0o700)
    (directory / "secrets").mkdir(mode=0o700)
    load_or_create_key(directory / "secrets" / _STORAGE_KEY.name)
    _write(directory / PLAN_FILE, plan.to_toml().encode(), 0o600)
    (directory / "hosts").mkdir(mode=0o700)
    for host in plan.hosts.values():
        _write(directory / "hosts" / f"{host.name}.toml", plan.host_config(host.name, host.services).encode(), 0o600)


def sign_identities(directory: Path) -> None:
    """Measure the services as installed here and sign a new ``enclave_info.toml``, keeping every key.

    After an upgrade, the services' code (and so their measurements) changed: peers refuse a
    service whose measurement the identity file does not list.

    Raises:
        ConfigurationError: ``directory`` holds no deployment.
    """
    load_plan(directory)
    provision(directory / _ATTESTATION, SERVICES)


def _check_host_config(plan: DeploymentPlan, name: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(plan.host_config(name, plan.hosts[name].services))
        f.flush()
        try:
            load_settings(Path(f.name), {})
        except CloisterError as exc:
            raise ConfigurationError(f"host {name}'s settings would not load: {exc.message}") from None


def load_plan(directory: Path) -> DeploymentPlan:
    path = directory / PLAN_FILE
    if not path.exists():
        raise ConfigurationError(f"{directory} holds no deployment: create one with 'cloister deploy init {directory}'")
    return read_plan(path)


# --- deploy bundle ---------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFile:
    path: PurePosixPath
    """Relative to the host's state directory."""
    data: bytes
    secret: bool


def bundle_files(
    directory: Path, host: str, services: tuple[str, ...] | None = None, state_dir: Path | None = None
) -> list[BundleFile]:
    """What host ``host`` needs to run ``services`` (default: the ones the plan gives it), and nothing more.

    Raises:
        ConfigurationError: the host or a service is not in the plan.
    """
    plan = load_plan(directory)
    if host not in plan.hosts:
        raise ConfigurationError(f"the deployment has no host {host!r}; hosts: {', '.join(plan.hosts)}")
    placed = plan.hosts[host].services
    services = placed if services is None else tuple(dict.fromkeys(services))
    for service in services:
        if service not in ALL_SERVICES:
            raise ConfigurationError(f"{service!r} is not a service; services: {', '.join(ALL_SERVICES)}")
        if service not in placed:
            raise ConfigurationError(
                f"the plan does not place {service} on {host} (it runs {', '.join(placed)}), so no peer would "
                f"dial it there; change {PLAN_FILE} and run 'cloister deploy init --force'"
            )
    attestation = directory / _ATTESTATION
    files = [BundleFile(PurePosixPath(CONFIG_FILE), plan.host_config(host, services, state_dir).encode(), False)]

    def add(name: str, secret: bool) -> None:
        files.append(BundleFile(PurePosixPath(_ATTESTATION, name), (attestation / name).read_bytes(), secret))

    for name in _PUBLIC:
        add(name, False)
    for path in sorted((attestation / "auditors").iterdir()):
        if path.name.endswith((".public.pem", ".sign.sha256")):
            add(f"auditors/{path.name}", False)
    if ATTESTATION_SERVICE in services:
        for name in _ATTESTATION_SECRETS:
            add(name, True)
        for name in _ATTESTATION_PUBLIC:
            add(name, False)
    if plan.tee_backend == "sim" and any(s != ATTESTATION_SERVICE for s in services):
        add(_SIM_QUOTING_KEY, True)
    if "storage" in services:
        files.append(BundleFile(_STORAGE_KEY, (directory / "secrets" / _STORAGE_KEY.name).read_bytes(), True))
    return files


def write_bundle(files: list[BundleFile], output: Path, force: bool = False) -> None:
    """A ``.tar.gz`` (0600) when ``output`` ends so, else a directory (0700) of the files.

    Raises:
        ConfigurationError: ``output`` exists (and not ``force``).
    """
    if (output.exists() or output.is_symlink()) and not force:
        raise ConfigurationError(f"{output} exists; use --force to replace it")
    if output.name.endswith((".tar.gz", ".tgz")):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for directory in sorted({p for f in files for p in f.path.parents if str(p) != "."}):
                info = tarfile.TarInfo(str(directory))
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                archive.addfile(info)
            for file in files:
                info = tarfile.TarInfo(str(file.path))
                info.size, info.mode = len(file.data), 0o600
                archive.addfile(info, io.BytesIO(file.data))
        output.unlink(missing_ok=True)
        _write(output, buffer.getvalue(), 0o600)
        return
    if output.is_symlink() or output.is_file():
        output.unlink()
    elif output.exists():
        shutil.rmtree(output)
    output.mkdir(mode=0o700, parents=True)
    for file in files:
        _write_under(output, file.path, file.data)


# --- deploy unpack ---------------------------------------------------------------------


def unpack_bundle(bundle: Path, target: Path | None = None, force: bool = False) -> Path:
    """Put a bundle's files into ``target`` (default: the state directory its settings name).

    Only regular files and directories whose names stay under ``target`` are accepted: an
    absolute name, ``..``, a link or a device refuses the whole bundle before anything is
    written. Returns the target.

    Raises:
        ConfigurationError: the bundle is unsafe or unreadable, or a file exists (and not ``force``).
    """
    files = _read_bundle(bundle)
    if target is None:
        config = files.get(PurePosixPath(CONFIG_FILE))
        if config is None:
            raise ConfigurationError(f"{bundle} has no {CONFIG_FILE}: not a Cloister bundle")
        try:
            target = Path(tomllib.loads(config.decode())["state_dir"])
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"{bundle}'s {CONFIG_FILE} names no state_dir ({exc})") from None
        if not target.is_absolute():
            raise ConfigurationError(f"{bundle}'s {CONFIG_FILE} names a relative state_dir; give --state-dir")
    existing = [str(p) for p in files if (target / p).exists()]
    if existing and not force:
        raise ConfigurationError(f"{target} already holds {', '.join(existing[:3])}; use --force to replace them")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    for path, data in files.items():
        _write_under(target, path, data)
    return target


def _read_bundle(bundle: Path) -> dict[PurePosixPath, bytes]:
    files: dict[PurePosixPath, bytes] = {}
    if bundle.is_dir():
        for path in sorted(bundle.rglob("*")):
            relative = PurePosixPath(path.relative_to(bundle).as_posix())
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise ConfigurationError(f"{bundle} holds {relative}, which is neither a file nor a directory")
            if path.is_file():
                files[_safe_name(str(relative), bundle)] = path.read_bytes()
        return files
    try:
        with tarfile.open(bundle, mode="r:gz") as archive:
            members = archive.getmembers()
            if len(members) > _MAX_MEMBERS:
                raise ConfigurationError(f"{bundle} holds more than {_MAX_MEMBERS} entries: not a Cloister bundle")
            total = 0
            for member in members:
                name = _safe_name(member.name, bundle)
                if member.isdir():
                    continue
                if not member.isreg():
                    raise ConfigurationError(f"{bundle}: {member.name} is a link or a device; refused")
                total += member.size
                if total > _MAX_BUNDLE_BYTES:
                    raise ConfigurationError(f"{bundle} is larger than a bundle can be; refused")
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file
                files[name] = extracted.read()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ConfigurationError(f"{bundle} is not a readable .tar.gz bundle: {exc}") from None
    return files


def _safe_name(name: str, bundle: Path) -> PurePosixPath:
    """``name`` if it stays under the target and is a place a bundle puts files; else the bundle is refused."""
    path = PurePosixPath(name.rstrip("/"))
    if (
        not name
        or path.is_absolute()
        or "\\" in name
        or "\x00" in name
        or any(part in ("..", "") for part in name.rstrip("/").split("/") if part != ".")
        or not path.parts
    ):
        raise ConfigurationError(f"{bundle}: entry {name!r} would land outside the target; refused")
    path = PurePosixPath(*(part for part in path.parts if part != "."))
    if not (path.parts[0] in _BUNDLE_PLACES and (len(path.parts) == 1 or path.parts[0] != CONFIG_FILE)):
        raise ConfigurationError(
            f"{bundle}: entry {name!r} is not something a bundle holds ({', '.join(_BUNDLE_PLACES)}); refused"
        )
    return path


def _write_under(root: Path, relative: PurePosixPath, data: bytes) -> None:
    """Write ``root/relative`` (0600), creating directories (0700), never through a link."""
    directory = root
    for part in relative.parts[:-1]:
        directory = directory / part
        try:
            mode = os.lstat(directory).st_mode
        except FileNotFoundError:
            directory.mkdir(mode=0o700)
            continue
        if not stat.S_ISDIR(mode):
            raise ConfigurationError(f"{directory} is not a directory (a link?); refused")
    path = directory / relative.parts[-1]
    if path.is_symlink():
        raise ConfigurationError(f"{path} is a link; refused")
    _write(path, data, 0o600)


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


# --- small helpers ---------------------------------------------------------------------


def render_toml(data: Mapping[str, Any]) -> str:
    """TOML for plain values and nested tables (what the settings and the plan hold)."""
    lines: list[str] = []
    _render_table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _render_table(data: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    """Top-level tables get a ``[header]``; tables inside them are written inline."""
    if prefix:
        lines.extend(["", f"[{'.'.join(_key(p) for p in prefix)}]"])
    for key, value in data.items():
        if prefix or not isinstance(value, Mapping):
            lines.append(f"{_key(key)} = {_value(value)}")
    if not prefix:
        for key, value in data.items():
            if isinstance(value, Mapping):
                _render_table(value, [key], lines)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise ConfigurationError(f"cannot write {value!r} as a setting")


def _no_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigurationError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a table")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where} must be a non-empty string")
    return value


def _absolute(value: Any, where: str) -> Path:
    path = Path(_string(value, where))
    if not path.is_absolute():
        raise ConfigurationError(f"{where} must be an absolute path")
    return path


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _check_host(host: str, where: str) -> None:
    try:
        EndpointSettings(host=host)
    except ValueError:
        raise ConfigurationError(f"{where} must be a DNS name or an IP address, not {host!r}") from None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
