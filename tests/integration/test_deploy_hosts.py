"""A deployment across three "hosts" on this machine (loopback addresses 127.0.0.2-4 and the name
``localhost``, a state directory each), made as docs/deployment.md says: ``cloister deploy init``,
one bundle per host, ``cloister deploy unpack``, ``cloister service NAME --config ...`` per service,
then a task run end to end through the Python client."""

from __future__ import annotations

import io
import socket
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloister_cli import cloister
from host_processes import START_ORDER, HostProcesses, run_echo

from cloister.errors import AttestationError
from cloister.sdk import AuthenticationService

HOSTS = {
    "alpha": ("127.0.0.2", ["attestation", "storage", "management", "access_control"]),
    "beta": ("localhost", ["authentication", "frontend", "scheduler"]),
    "gamma": ("127.0.0.4", ["execution"]),
}
ENDPOINTS = (
    "attestation",
    "authentication_api",
    "authentication_internal",
    "frontend",
    "management",
    "storage",
    "access_control",
    "scheduler",
)


def _free_ports(count: int) -> list[int]:
    holders = []
    try:
        for _ in range(count):
            holder = socket.socket()
            holder.bind(("0.0.0.0", 0))  # free on every loopback address the hosts use
            holders.append(holder)
        return [holder.getsockname()[1] for holder in holders]
    finally:
        for holder in holders:
            holder.close()


def _hosts_file(path: Path) -> Path:
    ports = dict(zip(ENDPOINTS, _free_ports(len(ENDPOINTS)), strict=True))
    lines = ["[ports]", *(f"{name} = {port}" for name, port in ports.items()), ""]
    for name, (address, services) in HOSTS.items():
        lines += [f"[hosts.{name}]", f'address = "{address}"', f"services = {services!r}".replace("'", '"')]
        if address == "localhost":
            lines.append('listen = "127.0.0.1"')  # a DNS name for peers; the server binds one of its addresses
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _names(bundle: Path) -> set[str]:
    with tarfile.open(bundle) as archive:
        return {member.name for member in archive.getmembers() if member.isfile()}


@pytest.fixture
def hosts() -> Iterator[HostProcesses]:
    processes = HostProcesses()
    try:
        yield processes
    finally:
        processes.stop()


def test_three_hosts_joined_by_bundles_run_a_task(tmp_path: Path, hosts: HostProcesses) -> None:
    deployment = tmp_path / "deployment"
    created = cloister("deploy", "init", deployment, "--hosts", _hosts_file(tmp_path / "hosts.toml"))
    assert created.returncode == 0, created.stderr
    again = cloister("deploy", "init", deployment, "--hosts", tmp_path / "hosts.toml")
    assert again.returncode == 1 and "use --force to replace it" in again.stderr

    state = {}
    for name in HOSTS:
        bundle = tmp_path / f"{name}.tar.gz"
        state[name] = tmp_path / f"host-{name}"
        made = cloister("deploy", "bundle", deployment, "--host", name, "-o", bundle, "--state-dir", state[name])
        assert made.returncode == 0, made.stderr
        unpacked = cloister("deploy", "unpack", bundle)
        assert unpacked.returncode == 0, unpacked.stderr
        assert (state[name] / "cloister.toml").exists()

    # Each host holds the keys of its own services only; the auditor's key stays in the deployment.
    alpha, beta, gamma = (_names(tmp_path / f"{name}.tar.gz") for name in HOSTS)
    assert {"attestation/as_root_ca.key", "attestation/deployment_ca.key", "storage/storage.key"} <= alpha
    for other in (beta, gamma):
        assert not {n for n in other if n.endswith(".key")} - {"attestation/sim_quoting.key"}
    assert not any("auditors/dev.key" in names or "platform_signing.key" in names for names in (alpha, beta, gamma))

    for service in START_ORDER:
        host = next(name for name, (_, services) in HOSTS.items() if service in services)
        hosts.start(service, state[host])

    status = cloister("status", "--config", state["gamma"] / "cloister.toml")
    assert status.returncode == 0, status.stdout + status.stderr

    root_ca = str(deployment / "attestation" / "as_root_ca.pem")
    enclave_info = str(deployment / "attestation" / "enclave_info.toml")
    endpoints = tomllib.loads((state["gamma"] / "cloister.toml").read_text())["endpoints"]
    port = {name: endpoint["port"] for name, endpoint in endpoints.items()}
    password = (state["beta"] / "admin-password").read_text().strip()
    address = {name: f"localhost:{port[name]}" for name in ("authentication_api", "frontend")}
    echoed = run_echo(deployment, address["authentication_api"], address["frontend"], password, "from three hosts")
    assert echoed == b"from three hosts"
    # What binds is the service's attested identity, not the address: the frontend's genuine,
    # attested endpoint is refused by a client that expects the authentication service there.
    with pytest.raises(AttestationError) as refused:
        AuthenticationService(f"localhost:{port['frontend']}", root_ca, enclave_info)
    assert "peer is teaclave_frontend_service, expected teaclave_authentication_service" in str(refused.value)
    # The task's records were written by the storage of host alpha, and nowhere else.
    assert (state["alpha"] / "storage" / "cloister.db").exists()
    assert not (state["beta"] / "storage").exists() and not (state["gamma"] / "storage").exists()


def test_unpack_refuses_entries_outside_the_target_and_links(tmp_path: Path) -> None:
    for name, kind in (("../escape", tarfile.REGTYPE), ("/etc/evil", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        bundle = tmp_path / "evil.tar.gz"
        with tarfile.open(bundle, "w:gz") as archive:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            archive.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        target = tmp_path / "target"
        refused = cloister("deploy", "unpack", bundle, "--state-dir", target)
        assert refused.returncode == 1, name
        assert "refused" in refused.stderr
        assert not target.exists() and not (tmp_path / "escape").exists()
