"""Every example script runs against a running platform, as a user would run it after ``make run``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.testing import RunningPlatform

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "builtins"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs(platform: RunningPlatform, script: Path) -> None:
    env = {**os.environ, "CLOISTER_ADMIN_PASSWORD": platform.admin_password}
    args = [sys.executable, str(script), "--state-dir", str(platform.state_dir), "--fixtures", str(TEACLAVE_FIXTURES)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("builtin"), result.stdout
