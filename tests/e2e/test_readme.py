"""The README's quick start, run verbatim against a real platform, so the README cannot drift.

The code is read from README.md between the quick-start markers and fed to an interactive
interpreter, as a user pastes it into ``.venv/bin/python`` after ``make run``; the platform is
found the way ``make run``'s is, through ``$CLOISTER_STATE_DIR`` and ``<state>/admin-password``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cloister.testing import RunningPlatform

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- quick-start:"
END = "<!-- quick-start end -->"

EXPECTED_OUTPUT = [
    "['approval by admin, bob', 'an invoke by its creator bob']",
    "admin True",
    "bob True",
    "b'Hello From Cloister!'",
    "FINISHED",
]


def quick_start_code() -> str:
    """Every ```python block between the markers, in order."""
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "README.md must mark its quick start once"
    section = text[text.index(START) : text.index(END)]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert blocks, "no python block in the README's quick start"
    return "\n".join(blocks)


def test_the_quick_start_runs_as_pasted(platform: RunningPlatform) -> None:
    code = quick_start_code()
    assert "Client.connect_local()" in code  # the make run path, with nothing substituted
    password_file = platform.state_dir / "admin-password"  # what make run leaves there
    password_file.write_text(platform.admin_password + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    env["CLOISTER_STATE_DIR"] = str(platform.state_dir)
    try:
        # -i: the interactive interpreter a user pastes into (a compound statement ends at a blank
        # line, so a block that only works as a script fails here); a blank line then closes the last.
        run = subprocess.run(
            [sys.executable, "-i", "-q"],
            input=code + "\n\n",
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
    finally:
        password_file.unlink()
    assert "Traceback" not in run.stderr and "Error" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == EXPECTED_OUTPUT
    for line in (EXPECTED_OUTPUT[0], EXPECTED_OUTPUT[3], EXPECTED_OUTPUT[4]):
        assert f"# {line}" in code, f"the README's comment no longer shows the output {line!r}"
