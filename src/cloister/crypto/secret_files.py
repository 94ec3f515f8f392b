"""Small secret files (sealing keys, the JWT key, the admin password): written once, owner-readable only."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def create_secret_file(path: Path, content: bytes) -> bool:
    """Create ``path`` with mode 0600 holding ``content``; False, untouched, when it already exists.

    The file is created with ``O_EXCL``, so two starts racing on one state directory never
    overwrite each other's secret, and fsynced (with its directory) before this returns.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)  # the umask may only remove bits, but be explicit
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
