"""``cloister service execution`` run on its own refuses to start, saying what is missing and how
to grant it, when the host or runtime cannot give the full task sandbox; given it, it starts.

Each case takes one thing away from a real process the way a container runtime would: a
capability from the bounding set (``setpriv``), root (``setpriv --reuid``), a bubblewrap that
cannot make namespaces (a stand-in first on PATH).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cloister_cli import clean_environment, cloister_command

from cloister.executors.sandbox.requirements import CAPABILITIES, shortfalls

SETPRIV = shutil.which("setpriv")
FULL = os.geteuid() == 0 and not shortfalls()
needs_full_host = pytest.mark.skipif(
    not FULL or SETPRIV is None, reason="needs a host that gives the full sandbox (root, cgroups, bwrap) and setpriv"
)


def _execution(state_dir: Path, prefix: Sequence[str] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """The execution service, alone, to its exit (it has no deployment, so it cannot run long)."""
    return subprocess.run(
        [*prefix, cloister_command(), "service", "execution", "--state-dir", str(state_dir)],
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _bounded(capabilities: Sequence[str]) -> list[str]:
    """``setpriv`` keeping only ``capabilities`` (names without ``CAP_``) for the command after it."""
    assert SETPRIV is not None
    keep = ",".join(f"+{name.removeprefix('CAP_').lower()}" for name in capabilities)
    return [SETPRIV, f"--bounding-set=-all,{keep}", "--inh-caps=-all", "--no-new-privs"]


@needs_full_host
def test_starts_with_exactly_the_documented_capabilities(tmp_path: Path) -> None:
    result = _execution(tmp_path / "state", _bounded(list(CAPABILITIES)))
    # Past the sandbox check, it stops at the next step: this state directory has no deployment.
    assert "task sandbox: full" in result.stderr
    assert "enclave_info.toml is missing" in result.stderr
    assert result.returncode == 1


@needs_full_host
@pytest.mark.parametrize("withheld", sorted(CAPABILITIES))
def test_refuses_without_a_capability(tmp_path: Path, withheld: str) -> None:
    result = _execution(tmp_path / "state", _bounded([c for c in CAPABILITIES if c != withheld]))
    assert result.returncode == 1
    assert f"cannot run: sandbox unavailable: capabilities missing: {withheld}; grant them" in result.stderr
    assert "the execution service runs no task without it" in result.stderr
    assert "task sandbox: full" not in result.stderr


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user may write (the test's own tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="cloister-execution-"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root to become another user (setpriv)")
def test_refuses_as_an_ordinary_user(shared_dir: Path) -> None:
    as_nobody = [SETPRIV or "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    reachable = subprocess.run([*as_nobody, cloister_command(), "--version"], capture_output=True, timeout=60)
    if reachable.returncode != 0:
        # A checkout under /root (as in CI) is root's alone: the user is let read it, and only that.
        as_nobody += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    result = _execution(shared_dir / "state", as_nobody)
    assert result.returncode == 1
    assert "cannot run: sandbox unavailable: not root: the service runs as uid 65534" in result.stderr
    assert "run the execution service as root (uid 0 in its container)" in result.stderr


@needs_full_host
def test_refuses_when_the_runtime_forbids_namespaces(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\nexit 1\n"
    )
    (fake / "bwrap").chmod(0o755)
    result = _execution(tmp_path / "state", PATH=f"{fake}:{os.environ['PATH']}")
    assert result.returncode == 1
    assert "Creating new namespace failed" in result.stderr  # bubblewrap's own words, logged
    assert "cannot run: sandbox unavailable: a test task failed" in result.stderr
    assert "the runtime must allow new namespaces and mounts" in result.stderr
    assert "task sandbox: full" not in result.stderr


@needs_full_host
def test_up_refuses_before_starting_anything(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    result = subprocess.run(
        [
            *_bounded([c for c in CAPABILITIES if c != "CAP_NET_ADMIN"]),
            cloister_command(),
            "up",
            "--state-dir",
            state_dir,
        ],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "Error: sandbox unavailable: capabilities missing: CAP_NET_ADMIN" in result.stderr
    assert not (state_dir / "logs").exists() or not any((state_dir / "logs").iterdir())
