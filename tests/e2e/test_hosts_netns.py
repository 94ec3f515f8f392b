"""Three hosts as network namespaces on a bridge, each with its own address and DNS names for its
peers (``/etc/netns/NAME/hosts``, which ``ip netns exec`` puts in place of ``/etc/hosts``), every
service on its default port: docs/deployment.md followed step by step, then a task from the client.

Skipped only where network namespaces cannot be created (not root, no ``ip``, no kernel support).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cloister_cli import cloister, cloister_command
from host_processes import START_ORDER, HostProcesses

from cloister.sdk import AuthenticationService, FrontendService, FunctionArgument

DOMAIN = "cloister.test"
HOSTS = {
    "alpha": ["attestation", "storage", "management", "access_control"],
    "beta": ["authentication", "frontend", "scheduler"],
    "gamma": ["execution"],
}


@dataclass(frozen=True)
class Network:
    namespaces: dict[str, str]
    """Host -> its namespace."""
    addresses: dict[str, str]
    """Host -> its address on the bridge."""

    def run(self, host: str, *command: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespaces[host], *map(str, command)],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def network() -> Iterator[Network]:
    tag = f"cl{os.getpid() % 100000}"
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    probe = f"{tag}-probe"
    if shutil.which("ip") is None:
        pytest.skip("network namespaces cannot be created: no `ip` command (iproute2)")
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        pytest.skip(f"network namespaces cannot be created here: {made.stderr.strip()}")
    _ip("netns", "del", probe)

    namespaces = {host: f"{tag}-{host}" for host in HOSTS}
    addresses = {host: f"{subnet}.{i}" for i, host in enumerate(HOSTS, start=1)}
    bridge = f"{tag}br"
    hosts_file = "".join(f"{addresses[h]} {h}.{DOMAIN}\n" for h in HOSTS)
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.254/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, host in enumerate(HOSTS, start=1):
            namespace, outside, inside = namespaces[host], f"{tag}v{i}", f"{tag}p{i}"
            _ip("netns", "add", namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("link", "set", outside, "master", bridge, "up")
            _ip("-n", namespace, "addr", "add", f"{addresses[host]}/24", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            etc = Path("/etc/netns") / namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(f"127.0.0.1 localhost\n{hosts_file}")
        yield Network(namespaces, addresses)
    finally:
        for i, host in enumerate(HOSTS, start=1):
            subprocess.run(["ip", "link", "del", f"{tag}v{i}"], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", namespaces[host]], capture_output=True, timeout=30)
            shutil.rmtree(Path("/etc/netns") / namespaces[host], ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)


@pytest.fixture
def hosts() -> Iterator[HostProcesses]:
    processes = HostProcesses()
    try:
        yield processes
    finally:
        processes.stop()


def test_three_namespaced_hosts_follow_the_deployment_guide(
    tmp_path: Path, network: Network, hosts: HostProcesses
) -> None:
    plan = tmp_path / "hosts.toml"
    plan.write_text(
        "".join(
            f'[hosts.{h}]\naddress = "{h}.{DOMAIN}"\nservices = [{", ".join(f"{s!r}" for s in services)}]\n\n'.replace(
                "'", '"'
            )
            for h, services in HOSTS.items()
        )
    )
    deployment = tmp_path / "deployment"
    created = cloister("deploy", "init", deployment, "--hosts", plan)
    assert created.returncode == 0, created.stderr
    state = {host: tmp_path / f"{host}-state" for host in HOSTS}
    for host in HOSTS:
        bundle = tmp_path / f"{host}.tar.gz"
        made = cloister("deploy", "bundle", deployment, "--host", host, "-o", bundle, "--state-dir", state[host])
        assert made.returncode == 0, made.stderr
        unpacked = network.run(host, cloister_command(), "deploy", "unpack", bundle)
        assert unpacked.returncode == 0, unpacked.stderr

    for service in START_ORDER:
        host = next(h for h, services in HOSTS.items() if service in services)
        hosts.start(service, state[host], prefix=("ip", "netns", "exec", network.namespaces[host]))

    status = network.run("gamma", cloister_command(), "status", "--config", state["gamma"] / "cloister.toml")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"beta.{DOMAIN}:7777" in status.stdout

    # The client is on none of the hosts and dials beta by its address, not by the name in the
    # settings: the services are known by their attested identity, not by a host name.
    root_ca = str(deployment / "attestation" / "as_root_ca.pem")
    enclave_info = str(deployment / "attestation" / "enclave_info.toml")
    password = (state["beta"] / "admin-password").read_text().strip()
    auth = AuthenticationService(f"{network.addresses['beta']}:7776", root_ca, enclave_info)
    frontend = FrontendService(f"{network.addresses['beta']}:7777", root_ca, enclave_info)
    try:
        auth.user_login("admin", password)
        frontend.metadata = dict(auth.metadata or {})
        function_id = frontend.register_function(
            "builtin-echo", "echo across namespaces", "builtin", arguments=[FunctionArgument("message")]
        )
        task_id = frontend.create_task(function_id, {"message": "from three namespaces"}, "builtin")
        frontend.invoke_task(task_id)
        assert frontend.get_task_result(task_id) == b"from three namespaces"
    finally:
        auth.close()
        frontend.close()
