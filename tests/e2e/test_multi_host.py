"""A deployment on eight hosts with PostgreSQL as the shared store survives, under load, the loss
of an execution host, the active scheduler, a frontend, a storage and a management replica.

Hosts are network namespaces on a bridge (``tests/support/netns.py``), each with its own address:
PostgreSQL on ``db``; attestation, authentication, storage, management and access control on
``core``, and replicas of storage and management on ``core2``; a frontend and a scheduler on each
of ``front1`` and ``front2``; an execution service on each of ``exec1``..``exec3``, with different
labels. Replicas are reached by one name that resolves to each of their hosts. Everything is set up as
docs/deployment.md says (``deploy init``, a bundle per host, ``deploy unpack``, ``cloister service``)
and the client runs outside every host, as a user's would.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cloister_cli import clean_environment, cloister, cloister_command
from host_processes import START_ORDER
from http_fixture_server import FixtureHTTPServer
from netns import Host, Network, network
from postgres_cluster import PostgresCluster, running_cluster

from cloister import Client, Credentials, Crypto, TaskStatus, Trust
from cloister.crypto.files import decrypt_file, encrypt_file
from cloister.errors import CloisterError

DOMAIN = "cloister.test"
PLACEMENT = {
    "core": ["attestation", "authentication", "storage", "management", "access_control"],
    "core2": ["storage", "management"],
    "front1": ["frontend", "scheduler"],
    "front2": ["frontend", "scheduler"],
    "exec1": ["execution"],
    "exec2": ["execution"],
    "exec3": ["execution"],
}
LABELS = {"exec1": ["zone-a", "any"], "exec2": ["zone-b", "any"], "exec3": ["zone-c", "any"]}
LEASE_SECONDS = 3
EXECUTOR_TIMEOUT_SECONDS = 5
TERMINAL = {TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.CANCELED}

SLOW_ECHO = b"""
import time

def entrypoint(argv):
    time.sleep(0.3)
    return argv[1]
"""
"""A task that takes long enough to be in flight when a host is lost."""

SUMMER = b"""
def entrypoint(argv):
    with teaclave_open("left", "rb") as left, teaclave_open("right", "rb") as right:
        total = int(left.read()) + int(right.read())
    with teaclave_open("total", "wb") as out:
        out.write(str(total).encode())
    return "summed"
"""


@dataclass
class Deployment:
    net: Network
    database: PostgresCluster
    database_name: str
    directory: Path
    states: dict[str, Path]
    processes: dict[tuple[str, str], subprocess.Popen[bytes]] = field(default_factory=dict)

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    def log(self, host: str, service: str) -> Path:
        return self.states[host] / "logs" / f"{service}.log"

    def start(self, host: str, service: str, *, ready: bool = True) -> None:
        """``cloister service SERVICE`` on ``host``, as its operator runs it; waits until it serves
        (or, with ``ready`` False, until it has logged that it stands by)."""
        state = self.states[host]
        log = self.log(host, service)
        log.parent.mkdir(exist_ok=True)
        command = [cloister_command(), "service", service, "--config", str(state / "cloister.toml")]
        process = self.host(host).popen(
            [*command, "--log-file", str(log)], env=clean_environment(), stdin=subprocess.DEVNULL
        )
        self.processes[host, service] = process
        deadline = time.monotonic() + 90
        marker = state / "run" / f"{service}.ready"
        while time.monotonic() < deadline:
            if ready and marker.exists() and marker.read_text().strip():
                return
            if not ready and log.exists() and "standing by" in log.read_text():
                return
            assert process.poll() is None, f"{service} on {host} exited:\n{_tail(log)}"
            time.sleep(0.1)
        raise AssertionError(f"{service} on {host} did not start:\n{_tail(log)}")

    def kill(self, host: str, service: str) -> None:
        os.kill(self.processes[host, service].pid, signal.SIGKILL)
        self.processes[host, service].wait()

    def address(self, host: str, port: int) -> str:
        return f"{self.host(host).address}:{port}"

    def client(self, front: str, user: str, password: str) -> Client:
        attestation = self.directory / "attestation"
        return Client.connect(
            self.address(front, 7777),
            trust=Trust.from_files(attestation / "as_root_ca.pem", attestation / "enclave_info.toml"),
            credentials=Credentials(user, password),
            authentication=self.address("core", 7776),
        )


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    except FileNotFoundError:
        return "(no log)"


def _plan(net: Network, database: PostgresCluster, name: str) -> str:
    subnet = net.gateway.rsplit(".", 1)[0] + ".0/24"
    lines = [
        f'[advertise]\nfrontend = "frontend.{DOMAIN}:7777"\nscheduler = "scheduler.{DOMAIN}:17780"\n'
        f'storage = "storage.{DOMAIN}:17778"\nmanagement = "management.{DOMAIN}:17777"\n',
    ]
    for host, services in PLACEMENT.items():
        settings: list[str] = []
        if "storage" in services:
            settings.append(
                f'storage = {{ backend = "postgres", dsn = "{database.dsn(name)}", '
                f'dsn_password_file = "{database.password_file}" }}'
            )
        if "scheduler" in services:
            settings.append(
                f"scheduler = {{ lease_seconds = {LEASE_SECONDS}, "
                f"executor_timeout_seconds = {EXECUTOR_TIMEOUT_SECONDS} }}"
            )
        if "execution" in services:
            settings.append(
                f'execution = {{ labels = {json.dumps(LABELS[host])}, allowed_networks = ["{subnet}"], slots = 2 }}'
            )
            # Three execution services share this one kernel: each its own task uids, as hosts would have.
            settings.append(f"sandbox = {{ first_task_uid = {1_500_000_000 + 100_000 * int(host[-1])} }}")
        lines.append(
            f'[hosts.{host}]\naddress = "{host}.{DOMAIN}"\nservices = {json.dumps(services)}\n'
            + (f"settings = {{ {', '.join(settings)} }}\n" if settings else "")
        )
    return "\n".join(lines)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    hosts = ["db", *PLACEMENT]
    names = {f"{h}.{DOMAIN}": [h] for h in hosts}
    names[f"frontend.{DOMAIN}"] = ["front1", "front2"]
    names[f"scheduler.{DOMAIN}"] = ["front1", "front2"]
    names[f"storage.{DOMAIN}"] = ["core", "core2"]
    names[f"management.{DOMAIN}"] = ["core", "core2"]
    with network(hosts, names) as net:
        db = net.hosts["db"]
        subnet = net.gateway.rsplit(".", 1)[0] + ".0/24"
        with running_cluster(db.address, tuple(db.prefix), clients=subnet) as database:
            name = database.create_database()
            plan = tmp_path / "hosts.toml"
            plan.write_text(_plan(net, database, name))
            directory = tmp_path / "deployment"
            created = cloister("deploy", "init", directory, "--hosts", plan)
            assert created.returncode == 0, created.stdout + created.stderr
            states = {host: tmp_path / f"{host}-state" for host in PLACEMENT}
            for host in PLACEMENT:
                bundle = tmp_path / f"{host}.tar.gz"
                made = cloister(
                    "deploy", "bundle", directory, "--host", host, "-o", bundle, "--state-dir", states[host]
                )
                assert made.returncode == 0, made.stderr
                unpacked = net.hosts[host].run(
                    [cloister_command(), "deploy", "unpack", str(bundle)], capture_output=True, text=True
                )
                assert unpacked.returncode == 0, unpacked.stderr
            running = Deployment(net, database, name, directory, states)
            try:
                for service in START_ORDER:
                    for host, services in PLACEMENT.items():
                        if service in services:
                            standby = service == "scheduler" and host == "front2"
                            running.start(host, service, ready=not standby)
                yield running
            finally:
                for (host, _), process in reversed(running.processes.items()):
                    net.hosts[host].stop(process)  # in reverse order of start, before PostgreSQL


def _admin_password(deployment: Deployment) -> str:
    return (deployment.states["core"] / "admin-password").read_text().strip()


def test_a_two_party_task_with_encrypted_files_runs_on_the_labelled_host(deployment: Deployment, tmp_path: Path):
    served = tmp_path / "served"
    served.mkdir()
    with FixtureHTTPServer(served, host=deployment.net.gateway) as files:
        with deployment.client("front1", "admin", _admin_password(deployment)) as root:
            root.users.register("left_bank", "left-password", "DataOwner", "banks")
            root.users.register("right_bank", "right-password", "DataOwner", "banks")
            root.users.register("summer", "summer-password", "FunctionOwner")
        with (
            deployment.client("front1", "summer", "summer-password") as owner,
            deployment.client("front1", "left_bank", "left-password") as left,
            deployment.client("front2", "right_bank", "right-password") as right,
        ):
            function = owner.functions.register(
                "summer", executor="python", payload=SUMMER, inputs=["left", "right"], outputs=["total"],
                public=False, allowed_users=["banks"],
            )  # fmt: skip
            function.set_requirements(["zone-b"])
            keys = {}
            registered = {}
            for party, name, number in ((left, "left", b"20"), (right, "right", b"22")):
                (tmp_path / f"{name}.txt").write_bytes(number)
                keys[name] = Crypto.aes_gcm_128(os.urandom(16))
                cmac = encrypt_file(keys[name], tmp_path / f"{name}.txt", served / f"{name}.enc")
                registered[name] = party.files.register_input(files.url(f"{name}.enc"), keys[name], cmac)
            keys["total"] = Crypto.aes_gcm_128(os.urandom(16))
            total = left.files.register_output(files.url("total.enc"), keys["total"])
            task = left.tasks.create(
                function.id, {}, executor="python",
                inputs_ownership={"left": "left_bank", "right": "right_bank"},
                outputs_ownership={"total": "left_bank"},
            )  # fmt: skip
            left.tasks.get(task.id).assign(inputs={"left": registered["left"]}, outputs={"total": total})
            right.tasks.get(task.id).assign(inputs={"right": registered["right"]})
            for party in (left, right, owner):
                party.tasks.get(task.id).approve()
            task.invoke()
            assert task.result(timeout=120).return_value == b"summed"
            decrypt_file(keys["total"], served / "total.enc", tmp_path / "total.txt")
            assert (tmp_path / "total.txt").read_bytes() == b"42"
    ran_on = [host for host in LABELS if f"running task {_uuid(task.id)}" in _run_log(deployment, host)]
    assert ran_on == ["exec2"]  # the only host labelled zone-b
    # The database holds the records, sealed: no plaintext of the parties or of the result.
    dump = deployment.database.psql(
        "SELECT encode(key, 'escape') || encode(value, 'escape') FROM cloister_kv", deployment.database_name
    )
    for secret in ("left_bank", "right_bank", "summed", "total.enc"):
        assert secret not in dump


def _uuid(task_id: str) -> str:
    """The uuid of an external task id (``task-<uuid>``), as execution services log it."""
    return task_id.removeprefix("task-")


def _run_log(deployment: Deployment, host: str) -> str:
    log = deployment.log(host, "execution")
    return log.read_text(errors="replace") if log.exists() else ""


@dataclass
class Load:
    """Clients creating, invoking and awaiting echo tasks, on whichever frontend answers."""

    deployment: Deployment
    function_id: str
    password: str
    acknowledged: dict[str, str] = field(default_factory=dict)
    """Task id -> "created" or "invoked": what the platform acknowledged."""
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, index: int) -> None:
        fronts = ["front1", "front2"] if index % 2 else ["front2", "front1"]
        client = None
        while not self.stop.is_set():
            try:
                if client is None:
                    client = self.deployment.client(fronts[0], "admin", self.password)
                message = f"load {index} {uuid.uuid4().hex[:8]}"
                task = client.tasks.create(self.function_id, {"message": message}, executor="python")
                with self.lock:
                    self.acknowledged[str(task.id)] = "created"
                task.invoke()
                with self.lock:
                    self.acknowledged[str(task.id)] = "invoked"
                with_result = task.wait(timeout=60)
                if with_result.status is TaskStatus.FINISHED:
                    assert task.result().return_value == message.encode()
            except CloisterError as exc:
                with self.lock:
                    self.errors[type(exc).__name__] += 1
                if client is not None:
                    client.close()
                client = None
                fronts.reverse()  # that frontend may be gone: try the other
                time.sleep(0.2)
        if client is not None:
            client.close()


def test_losing_an_execution_host_the_active_scheduler_a_frontend_and_core_replicas_under_load(
    deployment: Deployment,
):
    password = _admin_password(deployment)
    with deployment.client("front2", "admin", password) as root:
        function = root.functions.register("slow-echo", executor="python", payload=SLOW_ECHO, arguments=["message"])
        function.set_requirements(["any"])
        load = Load(deployment, str(function.id), password)
        threads = [threading.Thread(target=load.run, args=(i,), daemon=True) for i in range(6)]
        for thread in threads:
            thread.start()
        try:
            _wait_for_tasks(load, 20)
            deployment.kill("exec1", "execution")
            _wait_for_tasks(load, len(load.acknowledged) + 20)
            deployment.kill("front1", "scheduler")  # the active one: front2's takes over
            _wait_for_tasks(load, len(load.acknowledged) + 20, within=90)
            deployment.kill("front1", "frontend")
            _wait_for_tasks(load, len(load.acknowledged) + 20, within=90)
            deployment.kill("core", "management")  # its peers turn to core2's
            _wait_for_tasks(load, len(load.acknowledged) + 20, within=90)
            deployment.kill("core", "storage")
            _wait_for_tasks(load, len(load.acknowledged) + 20, within=90)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(90)

        assert "holds the lease" in deployment.log("front2", "scheduler").read_text()
        statuses = _final_statuses(root, load.acknowledged, within=120)
    counts = collections.Counter(s.name for s in statuses.values())
    runs = collections.Counter()
    for host in LABELS:
        for line in _run_log(deployment, host).splitlines():
            message = json.loads(line).get("message", "")
            if message.startswith("running task "):
                runs[message.split()[2]] += 1
    print(f"\n{len(load.acknowledged)} tasks acknowledged: {dict(counts)}; client errors {dict(load.errors)}")
    print({host: _run_log(deployment, host).count("running task") for host in LABELS}, "runs per execution host")
    # 0 acknowledged writes lost: every task created exists; every task invoked is over.
    assert len(statuses) == len(load.acknowledged)
    unfinished = {t: s for t, s in statuses.items() if load.acknowledged[t] == "invoked" and s not in TERMINAL}
    assert not unfinished, unfinished
    finished = [t for t, s in statuses.items() if s is TaskStatus.FINISHED]
    assert len(finished) >= 50, (counts, load.errors)
    # Each task ran once: no task is in two execution services' logs, nor twice in one.
    assert runs and max(runs.values()) == 1, [t for t, n in runs.items() if n > 1]
    assert {_uuid(t) for t in finished} <= set(runs)
    # The lost host ran tasks before it was lost, the survivors after.
    assert all(_run_log(deployment, host).count("running task") > 0 for host in LABELS)
    # The audit log stayed one hash chain through the losses.
    core = deployment.states["core"]
    verified = deployment.host("core").run(
        [cloister_command(), "audit", "verify", "--config", str(core / "cloister.toml")], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _wait_for_tasks(load: Load, count: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while len(load.acknowledged) < count:
        assert time.monotonic() < deadline, f"only {len(load.acknowledged)} tasks in {within} s: {load.errors}"
        time.sleep(0.2)


def _final_statuses(root: Client, acknowledged: dict[str, str], within: float) -> dict[str, TaskStatus]:
    """Each acknowledged task's status once every invoked one is over (or at ``within``)."""
    deadline = time.monotonic() + within
    while True:
        statuses = {task_id: root.tasks.get(task_id).status() for task_id in acknowledged}
        pending = [t for t, s in statuses.items() if acknowledged[t] == "invoked" and s not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            return statuses
        time.sleep(1 + random.random())
