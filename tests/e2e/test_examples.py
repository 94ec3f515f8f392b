"""``make examples`` runs every example script against a running platform, as a user runs it in a
second terminal after ``make run``, with nothing from outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cloister.testing import RunningPlatform

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SCRIPTS = [p for p in (EXAMPLES / "builtins").glob("*.py") if not p.name.startswith("_")]
SCRIPTS += (EXAMPLES / "wasm").glob("*.py")


def _make_examples(platform: RunningPlatform, *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "MAKE"))}
    environment["CLOISTER_ADMIN_PASSWORD"] = platform.admin_password
    command = [
        "make",
        "--no-print-directory",
        "-o",
        ".venv/.installed",  # the venv running this test is the one to use, as it is
        "examples",
        f"BIN={Path(sys.executable).parent}",
        f"ARGS=--state-dir {platform.state_dir}",
    ]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=900)


def test_make_examples_runs_every_example(platform: RunningPlatform) -> None:
    result = _make_examples(platform)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    headlines = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert len(headlines) == len(SCRIPTS), result.stdout  # one per script, in order
    outcome = dict(line.split(": ", 1) for line in headlines)
    assert outcome["builtin-echo"] == "Hello From Teaclave!"
    assert outcome["builtin-face-detection"].startswith("29 faces")
    assert outcome["builtin-password-check"] == "true"
    assert outcome["builtin-private-join-and-compute"] == "3 users join the task in total."
    assert outcome["wasm simple_add"] == "3 + 4 = 7"
    assert outcome["wasm millionaire"] == "7 bytes written; alice decrypts the answer: pf_in_a is richer"
    assert "output_result1 (read by user0 only)" in result.stdout


def test_an_example_without_a_platform_says_how_to_start_one(tmp_path: Path) -> None:
    example = EXAMPLES / "builtins" / "echo.py"
    result = subprocess.run(
        [sys.executable, str(example), "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"no running Cloister has its state in {tmp_path}" in result.stderr
    assert "make run" in result.stderr
    assert "Traceback" not in result.stderr
