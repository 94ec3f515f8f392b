"""Running the installed ``cloister`` command as a user does, and finding processes it left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def cloister_command() -> str:
    """The ``cloister`` console script of the environment running the tests."""
    beside = Path(sys.executable).parent / "cloister"
    found = str(beside) if beside.exists() else shutil.which("cloister")
    assert found is not None, "the cloister command is not installed (make install)"
    return found


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any CLOISTER_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    env.update(extra)
    return env


def cloister(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``cloister ARGS`` to completion, its output captured as text."""
    return subprocess.run(
        [cloister_command(), *(str(arg) for arg in args)],
        env=dict(env) if env is not None else clean_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def processes_mentioning(text: str) -> list[int]:
    """Pids of the live processes whose command line contains ``text`` (e.g. a state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command_line:
            found.append(int(entry.name))
    return found
