"""What ``make run`` needs from the system: bubblewrap and libseccomp, which every task's sandbox
(built-ins included) is made with.

As root it installs whichever is missing with apt-get, quietly, and does nothing when both are
there. Otherwise it prints the one command that installs them and exits 1, so that nothing is
started on a host where every task would fail. Standard library only: it runs with the system's
python3, before the virtual environment exists. ``cloister up`` then checks that a sandbox can
really be made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys


def has_bubblewrap() -> bool:
    return shutil.which("bwrap") is not None


def has_libseccomp() -> bool:
    """Found the way the sandbox loads it (``cloister.executors.sandbox.seccomp``)."""
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return ctypes.util.find_library("seccomp") is not None
    return True


CHECKS = {"bubblewrap": has_bubblewrap, "libseccomp2": has_libseccomp}
"""Debian's package names, and how to tell each is installed."""


def missing() -> list[str]:
    return [package for package, installed in CHECKS.items() if not installed()]


def install(packages: list[str], apt_get: str) -> int:
    """Install ``packages`` with apt-get without questions; its output is shown only if it fails."""
    print(f"installing {' '.join(packages)} (needed by the task sandbox) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt_get, "-qq", "update"],
        [apt_get, "-qq", "install", "-y", "--no-install-recommends", *packages],
    ):
        run = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stdout + run.stderr)
            print(f"{' '.join(command)} failed (exit status {run.returncode})", file=sys.stderr)
            return 1
    still = missing()
    if still:
        print(f"still missing after apt-get: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    needed = missing()
    if not needed:
        return 0
    apt_get = shutil.which("apt-get")
    if os.geteuid() == 0 and apt_get is not None:
        return install(needed, apt_get)
    what = " ".join(needed)
    print(f"Cloister's task sandbox needs {what}, which this system lacks. Install it with:", file=sys.stderr)
    if apt_get is not None:
        print(f"  sudo apt-get install {what}", file=sys.stderr)
    else:
        print(f"  your package manager's packages for {what} (bwrap and libseccomp.so.2)", file=sys.stderr)
    print("then run make run again.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
