"""``make run``'s first step, scripts/system_packages.py: as root it installs what the sandbox needs
only when missing; as anyone else it prints the command and stops.

bubblewrap is hidden by the PATH the script runs with; apt-get is a stand-in on that PATH that
records its calls (and, for root, "installs" a bwrap), so no test changes the machine.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system_packages.py"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
AS_ROOT = os.geteuid() == 0
SETPRIV = shutil.which("setpriv")

FAKE_APT_GET = """#!/bin/sh
echo "$*" >> {calls}
case "$*" in *install*bubblewrap*) printf '#!/bin/sh\\n' > {installed}/bwrap; {chmod} 755 {installed}/bwrap;; esac
"""


@pytest.fixture
def bench() -> Iterator[Path]:
    """A directory any user can read and write: ``bin/`` (the stand-in apt-get), ``installed/``
    (where it puts bwrap), ``calls`` (what apt-get was asked)."""
    directory = Path(tempfile.mkdtemp(prefix="cloister-packages-"))
    try:
        directory.chmod(0o777)
        (directory / "bin").mkdir(mode=0o755)
        (directory / "installed").mkdir()
        (directory / "installed").chmod(0o777)
        apt_get = directory / "bin" / "apt-get"
        apt_get.write_text(
            FAKE_APT_GET.format(
                calls=directory / "calls", installed=directory / "installed", chmod=shutil.which("chmod")
            )
        )
        apt_get.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory)


def _run(python: str, path: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [python, str(SCRIPT)]
    if user is not None:
        # A copy the user can read: the checkout may be somewhere only root reaches (/root/...).
        readable = Path(path).parent / SCRIPT.name
        shutil.copyfile(SCRIPT, readable)
        readable.chmod(0o644)
        command = [python, str(readable)]
        assert SETPRIV is not None
        account = pwd.getpwnam(user)
        command = [SETPRIV, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", *command]
    env = {"PATH": path, "LANG": "C.UTF-8"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _calls(bench: Path) -> list[str]:
    calls = bench / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="this machine lacks bubblewrap, so it cannot be all present")
def test_nothing_happens_when_everything_is_there(bench: Path) -> None:
    path = f"{bench / 'bin'}:{os.environ['PATH']}"
    result = _run(sys.executable, path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert _calls(bench) == []


@pytest.mark.skipif(not AS_ROOT, reason="installing is what the script does as root")
def test_as_root_it_installs_only_what_is_missing(bench: Path) -> None:
    path = f"{bench / 'bin'}:{bench / 'installed'}"  # no bwrap here until apt-get "installs" it
    result = _run(sys.executable, path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "installing bubblewrap (needed by the task sandbox) ...\n"
    assert _calls(bench) == ["-qq update", "-qq install -y --no-install-recommends bubblewrap"]
    again = _run(sys.executable, path)
    assert (again.returncode, again.stdout) == (0, "") and len(_calls(bench)) == 2


@pytest.mark.skipif(not AS_ROOT, reason="installing is what the script does as root")
def test_as_root_a_failed_install_stops_make_run(bench: Path) -> None:
    (bench / "bin" / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package bubblewrap' >&2\nexit 100\n")
    result = _run(sys.executable, str(bench / "bin"))
    assert result.returncode == 1
    assert "E: Unable to locate package bubblewrap" in result.stderr and "failed (exit status 100)" in result.stderr


@pytest.mark.skipif(
    not AS_ROOT or SYSTEM_PYTHON is None or SETPRIV is None,
    reason="needs root to become another user (setpriv) and a python3 that user may run",
)
def test_as_an_ordinary_user_it_prints_the_command_and_stops(bench: Path) -> None:
    assert SYSTEM_PYTHON is not None
    result = _run(SYSTEM_PYTHON, str(bench / "bin"), user="nobody")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Cloister's task sandbox needs bubblewrap, which this system lacks. Install it with:",
        "  sudo apt-get install bubblewrap",
        "then run make run again.",
    ]
    assert _calls(bench) == []
    assert not (bench / "installed" / "bwrap").exists()
