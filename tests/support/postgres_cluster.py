"""A throw-away PostgreSQL server for tests: Debian's binaries, a temporary data directory, a free port.

``initdb`` and ``pg_ctl`` refuse to run as root, so as root the cluster belongs to the ``postgres``
OS user; as anyone else, to that user. Connections over TCP use a password (SCRAM), so the
password-file path is what the tests exercise. The server is stopped by the pid in its
``postmaster.pid`` and its directory removed at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
"""Debian installs each major version's server binaries here, off PATH."""
ROLE = "cloister"


def server_binaries() -> Path | None:
    for directory in BIN_DIRS:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    directory: Path
    bin_dir: Path
    port: int
    password: str
    password_file: Path
    _owner: str | None = None
    _databases: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    """The address the server listens on and DSNs name."""
    prefix: tuple[str, ...] = ()
    """What runs the server's commands elsewhere, e.g. ``ip netns exec HOST`` for another host."""

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def dsn(self, database: str) -> str:
        """A DSN without the password (it comes from :attr:`password_file`)."""
        return f"postgresql://{ROLE}@{self.host}:{self.port}/{database}?connect_timeout=5"

    def _as_owner(self, *command: str | Path) -> list[str]:
        args = [str(c) for c in command]
        return [*self.prefix, *(["runuser", "-u", self._owner, "--"] if self._owner else []), *args]

    def _run(self, *command: str | Path) -> None:
        subprocess.run(self._as_owner(*command), check=True, capture_output=True, timeout=120, cwd=self.directory)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the cluster's socket; the output, unaligned."""
        command = self._as_owner(
            self.bin_dir / "psql", "-h", self.directory, "-p", str(self.port), "-d", database, "-X", "-A", "-t",
            "-v", "ON_ERROR_STOP=1", "-c", sql,
        )  # fmt: skip
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"psql failed: {done.stderr.strip()}"
        return done.stdout

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        self._databases.append(name)
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def start(self) -> None:
        self._run(
            self.bin_dir / "pg_ctl", "-D", self.data_dir, "-l", self.directory / "server.log", "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.directory} -c listen_addresses={self.host} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            "start",
        )  # fmt: skip

    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the postmaster, by its pid; waits until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while (self.data_dir / "postmaster.pid").exists() and time.monotonic() < deadline + 5:
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_cluster(
    host: str = "127.0.0.1", prefix: tuple[str, ...] = (), clients: str | None = None
) -> Iterator[PostgresCluster]:
    """A new cluster listening on ``host``, its commands run under ``prefix``; ``clients`` (a CIDR)
    may connect over TCP besides loopback."""
    bin_dir = server_binaries()
    if bin_dir is None:
        pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    owner = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="cloister-pg-"))
    if owner is not None:
        record = pwd.getpwnam(owner)
        os.chown(directory, record.pw_uid, record.pw_gid)
    directory.chmod(0o700)
    password = secrets.token_urlsafe(18)
    port = _free_port() if host == "127.0.0.1" else 5432
    cluster = PostgresCluster(
        directory, bin_dir, port, password, directory / "password", owner, host=host, prefix=prefix
    )
    try:
        superuser_pw = directory / "superuser-pw"
        superuser_pw.write_text(secrets.token_urlsafe(18))
        if owner is not None:
            os.chown(superuser_pw, pwd.getpwnam(owner).pw_uid, -1)
        cluster._run(
            bin_dir / "initdb", "-D", cluster.data_dir, "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", f"--pwfile={superuser_pw}", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        if clients is not None:
            with open(cluster.data_dir / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {clients} scram-sha-256\n")
        cluster.start()
        cluster.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
        cluster.password_file.write_text(password + "\n")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL server for the whole session; each test takes its own database."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_database(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped afterwards; its name."""
    name = postgres_cluster.create_database()
    try:
        yield name
    finally:
        postgres_cluster.drop_database(name)
