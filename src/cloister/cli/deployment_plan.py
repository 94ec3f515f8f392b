"""The plan of a deployment across hosts: which host runs which service, the address its peers
dial, where its servers listen, and each host's settings file as ``deploy init`` writes it."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloister.config import (
    ATTESTATION_SERVICE,
    DEFAULT_PORTS,
    ENDPOINTS,
    SERVICES,
    TEE_BACKENDS,
    EndpointSettings,
)
from cloister.errors import ConfigurationError
from cloister.launcher import ENDPOINTS_OF

DEFAULT_STATE_DIR = Path("/var/lib/cloister")
ALL_SERVICES = (ATTESTATION_SERVICE, *SERVICES)
_PLANNED_SETTINGS = {"endpoints", "state_dir", "tee_backend", "instance"}
"""Settings the plan itself decides, which a host's extra settings may not override."""


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
