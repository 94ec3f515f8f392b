"""Hosts on one machine for multi-host tests: network namespaces joined by a bridge.

Each host is a network namespace with its own address on a private /24, reached from the test
process (which stays in the root namespace) through the bridge's own address. A host's commands
enter only its network namespace, and a mount namespace of their own where the host's hosts file
(``/etc/netns/<namespace>/hosts``, so that names given with ``names=`` resolve) is bound over
``/etc/hosts``; unlike ``ip netns exec``, this keeps ``/sys`` and its cgroup hierarchies, which
the execution service's task sandbox needs. Everything is created with iproute2, as root;
when it cannot be, the test fails rather than skips. Processes started on a host are stopped by
their pid, then the namespaces, the bridge and the hosts files are removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed (multi-host tests run as root): {done.stderr.strip()}")


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def prefix(self) -> list[str]:
        """What runs a command on this host: in its network namespace, with its hosts file."""
        hosts = Path("/etc/netns") / self.namespace / "hosts"
        return [
            "nsenter", f"--net=/run/netns/{self.namespace}", "unshare", "--mount", "--propagation", "private",
            "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
        ]  # fmt: skip

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` on this host; it is stopped when the network is torn down."""
        process = subprocess.Popen([*self.prefix, *argv], **kwargs)
        self.processes.append(process)
        return process

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run([*self.prefix, *argv], **kwargs)

    def stop(self, process: subprocess.Popen[Any], sig: int = signal.SIGTERM, within: float = 30.0) -> None:
        """Stop ``process`` by its pid: ``sig``, then SIGKILL if it is still there after ``within`` s."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
            try:
                process.wait(within)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            self.stop(process, within=10.0)


class Network:
    """A bridge with hosts on ``10.<a>.<b>.0/24``; the bridge itself is ``.1``."""

    def __init__(self, names: Mapping[str, Sequence[str]] | None = None) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"clbr{self.tag}"
        octets = secrets.randbelow(200) + 20, secrets.randbelow(250) + 1
        self._subnet = f"10.{octets[0]}.{octets[1]}"
        self.gateway = f"{self._subnet}.1"
        self.hosts: dict[str, Host] = {}
        self._names = {name: list(hosts) for name, hosts in (names or {}).items()}

    def __enter__(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str) -> Host:
        """A new namespace on the bridge, with the next address."""
        index = len(self.hosts) + 2
        namespace = f"cl{self.tag}{name}"[:32]
        outside, inside = f"clv{self.tag}{index}", f"cli{self.tag}{index}"
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge, "up")
        host = Host(name, namespace, f"{self._subnet}.{index}")
        _ip("-n", namespace, "addr", "add", f"{host.address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        self.hosts[name] = host
        self._write_hosts_files()
        return host

    def name(self, name: str, *hosts: str) -> None:
        """Make ``name`` resolve, inside every host, to the addresses of ``hosts`` (in that order)."""
        self._names[name] = list(hosts)
        self._write_hosts_files()

    def _write_hosts_files(self) -> None:
        lines = ["127.0.0.1 localhost"]
        lines += [
            f"{self.hosts[host].address} {name}"
            for name, hosts in self._names.items()
            for host in hosts
            if host in self.hosts
        ]
        for host in self.hosts.values():
            directory = Path("/etc/netns") / host.namespace
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "hosts").write_text("\n".join(lines) + "\n")

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts.values():
            host.stop_all()
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)
            shutil.rmtree(Path("/etc/netns") / host.namespace, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


@contextlib.contextmanager
def network(hosts: Sequence[str], names: Mapping[str, Sequence[str]] | None = None) -> Iterator[Network]:
    """A network with ``hosts`` (names) on it, and ``names`` (DNS name -> hosts) resolving in each."""
    with Network(names) as net:
        for name in hosts:
            net.add_host(name)
        yield net
