"""Three hosts as network namespaces on a bridge (``tests/support/netns.py``), each with its own
address and DNS names for its peers, every service on its default port: docs/deployment.md
followed step by step, then a task from the client."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloister_cli import cloister, cloister_command
from host_processes import START_ORDER, HostProcesses, run_echo
from netns import Network, network

DOMAIN = "cloister.test"
HOSTS = {
    "alpha": ["attestation", "storage", "management", "access_control"],
    "beta": ["authentication", "frontend", "scheduler"],
    "gamma": ["execution"],
}


@pytest.fixture
def net() -> Iterator[Network]:
    with network(list(HOSTS), {f"{h}.{DOMAIN}": [h] for h in HOSTS}) as made:
        yield made


@pytest.fixture
def hosts() -> Iterator[HostProcesses]:
    processes = HostProcesses()
    try:
        yield processes
    finally:
        processes.stop()


def test_three_namespaced_hosts_follow_the_deployment_guide(tmp_path: Path, net: Network, hosts: HostProcesses) -> None:
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
        unpacked = _run(net, host, cloister_command(), "deploy", "unpack", bundle)
        assert unpacked.returncode == 0, unpacked.stderr

    for service in START_ORDER:
        host = next(h for h, services in HOSTS.items() if service in services)
        hosts.start(service, state[host], prefix=net.hosts[host].prefix)

    status = _run(net, "gamma", cloister_command(), "status", "--config", state["gamma"] / "cloister.toml")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"beta.{DOMAIN}:7777" in status.stdout

    # The client is on none of the hosts and dials beta by its address, not by the name in the
    # settings: the services are known by their attested identity, not by a host name.
    password = (state["beta"] / "admin-password").read_text().strip()
    beta = net.hosts["beta"].address
    echoed = run_echo(deployment, f"{beta}:7776", f"{beta}:7777", password, "from three namespaces")
    assert echoed == b"from three namespaces"


def _run(net: Network, host: str, *command: str | Path) -> subprocess.CompletedProcess[str]:
    return net.hosts[host].run(
        [str(part) for part in command], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
