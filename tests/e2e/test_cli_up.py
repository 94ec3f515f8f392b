"""``cloister up``, ``status`` and ``attest`` run as a user runs them, against the platform ``up``
starts: status finds that platform without being given its settings again, attest without a
service name does not say VERIFIED, and ``up`` refuses in one line, starting nothing, on a
host without a usable sandbox or with a configured port taken."""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cloister_cli import clean_environment, cloister, cloister_command, processes_mentioning

from cloister.testing import write_test_config

AS_ROOT = os.geteuid() == 0


@dataclass
class Launched:
    state_dir: Path
    config: Path
    frontend: str
    """The frontend's address, given to ``cloister up`` in the environment only."""
    console: str
    """The web console's URL, as the banner printed it."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_banner(process: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    buffered = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if not ready:
            if process.poll() is not None:
                break
            continue
        chunk = os.read(process.stdout.fileno(), 65536).decode()
        if not chunk:
            break
        buffered += chunk
        *complete, buffered = buffered.split("\n")
        lines += complete
        if "Press Ctrl-C to stop." in lines:
            return lines
    raise AssertionError(f"cloister up did not start: {[*lines, buffered]}")


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    directory = tmp_path_factory.mktemp("up")
    state_dir, config = directory / "state", write_test_config(directory, console=True)
    frontend, console = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    env = clean_environment(CLOISTER_ENDPOINTS__FRONTEND=frontend, CLOISTER_CONSOLE__ADDRESS=console)
    with open(directory / "up.err", "w") as errors:
        process = subprocess.Popen(
            [cloister_command(), "up", "--state-dir", str(state_dir), "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    try:
        banner = _wait_for_banner(process)
        assert f"  frontend API        {frontend}" in banner
        assert f"  web console         https://{console}" in banner
        assert f"  console certificate {state_dir / 'console' / 'console.crt'}" in banner
        yield Launched(state_dir, config, frontend, f"https://{console}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
            if process.stdout is not None:
                process.stdout.close()
    assert process.returncode == 0, (directory / "up.err").read_text()
    assert processes_mentioning(str(state_dir)) == []


def test_status_checks_the_platform_up_started_without_being_given_its_settings(launched: Launched) -> None:
    by_option = cloister("status", "--state-dir", launched.state_dir)
    by_environment = cloister("status", env=clean_environment(CLOISTER_STATE_DIR=str(launched.state_dir)))
    for result in (by_option, by_environment):
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        assert lines[0] == (
            f"state directory {launched.state_dir} (settings {launched.config}, as cloister up was started)"
        )
        rows = {line.split()[0]: line.split()[1] for line in lines[1:] if not line.startswith(" ")}
        assert rows == {name: "up" for name in rows} and len(rows) == 10, lines
        console = next(line for line in lines if line.startswith("console "))
        assert re.match(rf"console +up +{re.escape(launched.console)} \(serving\)", console)
        frontend = next(line for line in lines if line.startswith("frontend "))
        assert re.match(rf"frontend +up +{re.escape(launched.frontend)} \(serving, attested\)", frontend)


def test_attest_without_a_service_name_does_not_say_verified(launched: Launched) -> None:
    base = ["attest", launched.frontend, "--state-dir", launched.state_dir]
    unchecked = cloister(*base)
    assert unchecked.returncode == 1
    assert "identity           not checked (give --service NAME and an enclave_info.toml)" in unchecked.stdout
    assert "VERIFIED" not in unchecked.stdout
    assert unchecked.stderr.startswith("NOT VERIFIED: identity not checked")
    assert "give --service NAME (e.g. frontend), or --any-service" in unchecked.stderr.replace("\n", " ")

    anyone = cloister(*base, "--any-service")
    assert anyone.returncode == 0, anyone.stderr
    assert "identity           teaclave_frontend_service" in anyone.stdout
    assert anyone.stdout.splitlines()[-1] == "VERIFIED"

    named = cloister(*base, "--service", "frontend")
    assert named.returncode == 0 and named.stdout.splitlines()[-1] == "VERIFIED"
    both = cloister(*base, "--service", "frontend", "--any-service")
    assert both.returncode == 2 and "give either --service NAME or --any-service" in both.stderr


def _assert_refused_before_starting(result: subprocess.CompletedProcess[str], state_dir: Path) -> str:
    """The one error line of an ``up`` that started no service."""
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"Starting Cloister in {state_dir} ..." and len(lines) == 2, lines
    assert not (state_dir / "logs").exists()
    assert not (state_dir / "admin-password").exists()
    assert processes_mentioning(str(state_dir)) == []
    return lines[1]


def test_a_killed_console_is_started_again_at_the_same_address(launched: Launched) -> None:
    ready = launched.state_dir / "run" / "console.ready"
    certificate = ssl.create_default_context(cafile=launched.state_dir / "console" / "console.crt")
    assert httpx.get(f"{launched.console}/sign-in", verify=certificate).status_code == 200
    old = int(ready.read_text())
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not ready.exists() or int(ready.read_text() or old) == old:
        assert time.monotonic() < deadline, "the console was not started again"
        time.sleep(0.1)
    assert httpx.get(f"{launched.console}/sign-in", verify=certificate).status_code == 200


def test_a_taken_console_port_is_named_with_its_setting(tmp_path: Path) -> None:
    state_dir, config = tmp_path / "state", write_test_config(tmp_path, console=True)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        env = clean_environment(CLOISTER_CONSOLE__ADDRESS=f"127.0.0.1:{port}")
        result = cloister("up", "--state-dir", state_dir, "--config", config, env=env)
    error = _assert_refused_before_starting(result, state_dir)
    assert error == (
        f"Error: port {port} (console) is already in use on 127.0.0.1: stop what holds it, "
        "or change [console] address (CLOISTER_CONSOLE__ADDRESS)"
    )


def test_a_taken_port_is_named_with_its_setting(tmp_path: Path) -> None:
    state_dir, config = tmp_path / "state", write_test_config(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        config.write_text(config.read_text().replace('frontend = "127.0.0.1:0"', f'frontend = "127.0.0.1:{port}"'))
        result = cloister("up", "--state-dir", state_dir, "--config", config)
    error = _assert_refused_before_starting(result, state_dir)
    assert error == (
        f"Error: port {port} (frontend) is already in use on 127.0.0.1: stop what holds it, "
        "or change [endpoints] frontend (CLOISTER_ENDPOINTS__FRONTEND)"
    )


@pytest.mark.skipif(
    not AS_ROOT or shutil.which("unshare") is None or shutil.which("bwrap") is None,
    reason="hiding bubblewrap in a mount namespace needs root, unshare and an installed bwrap",
)
def test_up_refuses_without_bubblewrap_and_starts_nothing(tmp_path: Path) -> None:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    empty = tmp_path / "not-bwrap"
    empty.write_bytes(b"")
    empty.chmod(0o644)
    state_dir, config = tmp_path / "state", write_test_config(tmp_path)
    up = shlex.join([cloister_command(), "up", "--state-dir", str(state_dir), "--config", str(config)])
    hidden = f"mount --bind {shlex.quote(str(empty))} {shlex.quote(os.path.realpath(bwrap))} && exec {up}"
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", hidden],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    error = _assert_refused_before_starting(result, state_dir)
    assert error == (
        "Error: sandbox unavailable: bubblewrap (bwrap) is not installed; install it (apt-get install bubblewrap); "
        "every task, built-ins included, would fail, so nothing was started "
        "(the README's Requirements list what Cloister needs)"
    )
    assert shutil.which("bwrap") == bwrap  # hidden from that process only


def test_up_refuses_when_bubblewrap_cannot_make_a_sandbox(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    broken = fake / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)
    state_dir, config = tmp_path / "state", write_test_config(tmp_path)
    env = clean_environment(PATH=f"{fake}:{os.environ['PATH']}")
    result = cloister("up", "--state-dir", state_dir, "--config", config, env=env)
    error = _assert_refused_before_starting(result, state_dir)
    assert error.startswith(
        "Error: sandbox unavailable: a test sandbox failed (bwrap: No permissions to creating new namespace); "
        "every task, built-ins included, would fail"
    )
