"""The README's first steps in a fresh clone, on a host whose bubblewrap cannot make a sandbox
(as in an unprivileged container): ``make run`` installs Cloister and then refuses in one line,
starting nothing; ``cloister status`` and the quick start say nothing was started, without a
traceback or a hang."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from cloister_cli import clean_environment, processes_mentioning
from test_readme import quick_start_code

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()

# bwrap installed but refused its namespaces, as Docker without privileges answers.
BROKEN_BWRAP = "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("bwrap") is None,
    reason="replacing bwrap in a mount namespace needs root, unshare and an installed bwrap",
)
def test_make_run_in_a_fresh_clone_refuses_a_host_without_a_usable_sandbox(tmp_path: Path) -> None:
    assert "make run" in README and ".venv/bin/cloister status" in README
    clone, home = tmp_path / "cloister", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    broken = tmp_path / "bwrap"
    broken.write_text(BROKEN_BWRAP)
    broken.chmod(0o755)
    bwrap = os.path.realpath(shutil.which("bwrap") or "")
    make_run = f"mount --bind {shlex.quote(str(broken))} {shlex.quote(bwrap)} && exec make run"
    env = clean_environment(HOME=str(home))
    env.pop("XDG_STATE_HOME", None)

    def step(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    # make run installs into .venv first (minutes on a fresh machine), then starts nothing.
    run = step("unshare", "--mount", "--propagation", "private", "sh", "-c", make_run, timeout=900)
    assert run.returncode != 0, run.stdout[-2000:]
    refusal = [line for line in run.stderr.splitlines() if line.startswith("Error: sandbox unavailable")]
    assert len(refusal) == 1, run.stderr[-3000:]
    assert "bwrap: No permissions to create new namespace" in refusal[0]
    assert "nothing was started" in refusal[0]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    state_dir = home / ".local" / "state" / "cloister"
    assert processes_mentioning(str(state_dir)) == []

    status = step(".venv/bin/cloister", "status")
    assert status.returncode == 1
    assert status.stderr.startswith("Error: no Cloister has been started"), status.stderr
    assert len(status.stderr.splitlines()) == 1

    # The quick start pasted anyway: its first line says the same, as an exception a REPL shows.
    quick_start = step(".venv/bin/python", "-c", quick_start_code())
    assert quick_start.returncode == 1
    assert quick_start.stderr.splitlines()[-1].startswith(
        "cloister.errors.ConfigurationError: no Cloister has been started"
    ), quick_start.stderr
