"""A real small disk for tests of a full disk: a tmpfs of a fixed size, mounted and filled on demand.

Tests run as root in CI, so mounting works; when it does not, the test fails rather than skips.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

FILLER_NAME = "filler"


@contextlib.contextmanager
def mounted_tmpfs(directory: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` on ``directory`` (created) and unmount it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs (tests of a full disk run as root): {mounted.stderr}"
    try:
        yield directory
    finally:
        # Lazily: a process of the test that is still stopping may hold a file open there.
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def fill(directory: Path, leave_bytes: int = 0) -> Path:
    """Write a filler file in ``directory`` until its disk has at most ``leave_bytes`` free; its path."""
    filler = directory / FILLER_NAME
    chunk = b"\0" * (64 * 1024)
    with open(filler, "ab") as out:
        while True:
            free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
            if free <= leave_bytes:
                break
            try:
                out.write(chunk[: max(1, min(len(chunk), free - leave_bytes))])
                out.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return filler


def free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize
