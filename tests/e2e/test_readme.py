"""The README's quick start (and the docs' home page example), run verbatim against a real
platform, so neither can drift.

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

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS_HOME = ROOT / "docs" / "index.md"
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


def paste(platform: RunningPlatform, code: str) -> str:
    """What ``code`` prints when pasted into an interactive interpreter on a machine where ``make
    run`` started ``platform``; fails on any traceback."""
    assert "Client.connect_local(" in code  # the make run path, with nothing substituted
    password_file = platform.state_dir / "admin-password"  # what make run leaves there
    password_file.write_text(platform.admin_password + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    env["CLOISTER_STATE_DIR"] = str(platform.state_dir)
    try:
        # -i: the interpreter a user pastes into (a compound statement ends at a blank line, so
        # a block that only works as a script fails here); a blank line then closes the last one.
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
    return run.stdout


def test_the_quick_start_runs_as_pasted(platform: RunningPlatform) -> None:
    code = quick_start_code()
    assert paste(platform, code).splitlines() == EXPECTED_OUTPUT
    for line in (EXPECTED_OUTPUT[0], EXPECTED_OUTPUT[3], EXPECTED_OUTPUT[4]):
        assert f"# {line}" in code, f"the README's comment no longer shows the output {line!r}"


def test_the_docs_home_page_example_runs_as_pasted(platform: RunningPlatform) -> None:
    text = DOCS_HOME.read_text()
    code = re.findall(r"<!-- example:.*?-->\s*```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    assert len(code) == 1, "docs/index.md must mark its example once"
    assert paste(platform, code[0]).splitlines() == ["b'hello'"]
