"""Run mypy over the package and fail if it reports more errors than the recorded baseline.

The baseline only goes down: when a change fixes errors, lower ``BASELINE`` in the same commit.
"""

from __future__ import annotations

import re
import subprocess
import sys

BASELINE = 21
"""Errors mypy reports on main today (all in code that predates strict typing)."""


def main() -> int:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "src/cloister", "--ignore-missing-imports"], capture_output=True, text=True
    )
    found = re.search(r"Found (\d+) errors?", run.stdout)
    errors = int(found.group(1)) if found else (0 if run.returncode == 0 else -1)
    if errors < 0:
        print(run.stdout + run.stderr)
        print("mypy did not run")
        return 1
    if errors > BASELINE:
        print(run.stdout)
        print(f"mypy reports {errors} errors, more than the baseline of {BASELINE}: fix the new ones")
        return 1
    note = f"; lower BASELINE in {__file__} to {errors}" if errors < BASELINE else ""
    print(f"mypy: {errors} errors (baseline {BASELINE}){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
