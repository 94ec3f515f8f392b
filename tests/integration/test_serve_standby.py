"""``python -m cloister.serve --standby``: a process that waits for its role on standard input and
then runs exactly as an ordinary start with those arguments and that environment would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cloister_cli import clean_environment


def _standby(state_dir: Path, launcher_pid: int | None = None) -> subprocess.Popen[str]:
    launcher = str(launcher_pid or os.getpid())
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloister.serve",
            "--standby",
            "--state-dir",
            str(state_dir),
            "--launcher-pid",
            launcher,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environment(),
        text=True,
    )


def test_a_standby_no_one_needed_exits_quietly_when_its_launcher_closes_the_pipe(tmp_path: Path) -> None:
    standby = _standby(tmp_path)
    out, errors = standby.communicate("", timeout=60)
    assert (standby.returncode, out, errors) == (0, "", "")


def test_a_standby_runs_its_role_with_the_arguments_and_environment_it_was_given(tmp_path: Path) -> None:
    """Shown by settings only the role's environment makes invalid: the error names them."""
    role = {
        "argv": ["storage", "--state-dir", str(tmp_path / "state"), "--launcher-pid", str(os.getpid())],
        "env": {"CLOISTER_RPC__MAX_MESSAGE_BYTES": "lots"},
    }
    standby = _standby(tmp_path)
    _, errors = standby.communicate(json.dumps(role) + "\n", timeout=60)
    assert standby.returncode == 1, errors
    assert errors.startswith("Error: ") and "max_message_bytes" in errors and "Traceback" not in errors


@pytest.mark.parametrize("line", ["not json\n", '{"argv": ["nonsense"], "env": {}}\n'])
def test_a_standby_given_a_role_it_cannot_take_fails_without_running_anything(tmp_path: Path, line: str) -> None:
    standby = _standby(tmp_path)
    standby.communicate(line, timeout=60)
    assert standby.returncode != 0
    assert not (tmp_path / "state").exists()


def test_a_standby_whose_launcher_is_already_gone_exits(tmp_path: Path) -> None:
    standby = _standby(tmp_path, launcher_pid=1)  # not its parent: as if its launcher had died
    standby.communicate("", timeout=60)
    assert standby.returncode == 1
