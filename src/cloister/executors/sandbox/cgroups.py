"""One control group per task: memory (anonymous, tmpfs and memfd pages alike) and pids, counted
and capped by the kernel.

The execution service creates the group before the task's process exists and hands the task's
isolation step an open ``cgroup.procs`` descriptor per hierarchy; the process moves itself in by
writing ``0`` before any tenant code or data reaches it. Both layouts are supported: cgroup v2
with the ``memory`` and ``pids`` controllers on the unified hierarchy, and cgroup v1 with them
mounted as separate hierarchies (as on hosts where v2 is mounted without controllers). A host
with neither gives no groups: :func:`open_cgroups` returns None and the sandbox falls back to
rlimits (see ``docs/sandbox.md``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_CONTROLLERS = ("memory", "pids")
_PREFIX = "cloister-execution-"


@dataclass(frozen=True)
class _Mount:
    fs_type: str
    point: Path
    root: str
    options: frozenset[str]


def _mounts() -> list[_Mount]:
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            point = fields[4].replace("\\040", " ")
            mounts.append(_Mount(tail[0], Path(point), fields[3], frozenset(tail[2].split(","))))
    return mounts


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under ``""`` on the unified hierarchy."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _counter(path: Path, key: str) -> int:
    """The value of ``key`` in a flat-keyed cgroup file (``memory.events``, ``pids.events``); 0 if absent."""
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


class TaskCgroup:
    """The group(s) of one task; created by :meth:`CgroupTree.create`, removed by :meth:`remove`."""

    def __init__(self, tree: CgroupTree, directories: dict[str, Path]) -> None:
        self._tree = tree
        self.directories = directories
        """Controller (``memory``/``pids``, or ``""`` for v2) → the group's directory."""

    def open_procs(self) -> list[int]:
        """Descriptors on each group's ``cgroup.procs``; writing ``0`` to one moves the writer in."""
        unique = dict.fromkeys(self.directories.values())
        return [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC) for d in unique]

    def memory_exceeded(self) -> bool:
        """Whether the kernel killed a process of the task for going over its memory limit."""
        directory = self.directories[self._tree.memory_key]
        if self._tree.version == 2:
            return _counter(directory / "memory.events", "oom_kill") > 0
        return _counter(directory / "memory.oom_control", "oom_kill") > 0

    def pids_exceeded(self) -> bool:
        """Whether the task tried to start more threads or processes than its limit."""
        return _counter(self.directories[self._tree.pids_key] / "pids.events", "max") > 0

    def kill_all(self) -> None:
        """SIGKILL everything still in the group (the task's processes cannot leave it)."""
        for directory in dict.fromkeys(self.directories.values()):
            _kill_members(directory)

    def remove(self) -> None:
        """Remove the groups; whatever still runs in them is killed first."""
        for directory in dict.fromkeys(self.directories.values()):
            _remove_group(directory)


def _kill_members(directory: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _remove_group(directory: Path) -> None:
    for attempt in range(50):
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == 49:
                logger.warning("cannot remove task cgroup %s: %s", directory, exc)
                return
            _kill_members(directory)
            time.sleep(0.01)


class CgroupTree:
    """Where this execution service makes its tasks' groups: one parent per service and hierarchy."""

    def __init__(self, version: int, parents: dict[str, Path]) -> None:
        self.version = version
        self._parents = parents
        self.memory_key = "" if version == 2 else "memory"
        self.pids_key = "" if version == 2 else "pids"

    @property
    def description(self) -> str:
        return f"cgroup v{self.version} ({', '.join(str(p) for p in dict.fromkeys(self._parents.values()))})"

    def create(self, name: str, memory_bytes: int, pids: int) -> TaskCgroup:
        """A new group for one task with its limits set.

        Raises:
            OSError: the group could not be made or limited; the task must not run.
        """
        directories = {key: parent / name for key, parent in self._parents.items()}
        made: dict[str, Path] = {}
        try:
            for key, directory in directories.items():
                if directory not in made.values():
                    directory.mkdir(mode=0o700)
                made[key] = directory
            if self.version == 2:
                group = directories[""]
                _write(group / "memory.max", str(memory_bytes))
                with contextlib.suppress(FileNotFoundError):
                    _write(group / "memory.swap.max", "0")
                _write(group / "pids.max", str(pids))
            else:
                memory = directories["memory"]
                _write(memory / "memory.limit_in_bytes", str(memory_bytes))
                with contextlib.suppress(FileNotFoundError):
                    _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
                _write(directories["pids"] / "pids.max", str(pids))
        except OSError:
            for directory in dict.fromkeys(made.values()):
                _remove_group(directory)
            raise
        return TaskCgroup(self, directories)

    def close(self) -> None:
        for parent in dict.fromkeys(self._parents.values()):
            _remove_tree(parent)


def _remove_tree(parent: Path) -> None:
    with contextlib.suppress(OSError):
        for child in parent.iterdir():
            if child.is_dir():
                _remove_group(child)
    with contextlib.suppress(OSError):
        parent.rmdir()


def _stale(parent: Path) -> None:
    """Remove groups left by execution services that died without cleaning up."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            match = re.fullmatch(re.escape(_PREFIX) + r"(\d+)-[0-9a-f]+", entry.name)
            if match and not Path(f"/proc/{match.group(1)}").exists():
                _remove_tree(entry)


def open_cgroups() -> CgroupTree | None:
    """This service's tree of task groups, or None when the host has none to give."""
    mounts, own = _mounts(), _own_paths()
    name = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    unified = next((m for m in mounts if m.fs_type == "cgroup2"), None)
    if unified is not None and set(_CONTROLLERS) <= set(_read_words(unified.point / "cgroup.controllers")):
        parent = unified.point / name
        try:
            _stale(unified.point)
            _write(unified.point / "cgroup.subtree_control", " ".join(f"+{c}" for c in _CONTROLLERS))
            parent.mkdir(mode=0o700, exist_ok=True)
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in _CONTROLLERS))
            return CgroupTree(2, {"": parent})
        except OSError as exc:
            logger.warning("cgroup v2 is present but unusable here (%s)", exc)
            _remove_tree(parent)
    parents: dict[str, Path] = {}
    for controller in _CONTROLLERS:
        mount = next((m for m in mounts if m.fs_type == "cgroup" and controller in m.options), None)
        if mount is None or controller not in own:
            return None
        relative = os.path.relpath(own[controller], mount.root) if mount.root != "/" else own[controller]
        base = mount.point / relative.lstrip("/")
        if relative.startswith(".."):
            base = mount.point
        parent = base / name
        try:
            _stale(base)
            parent.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            logger.warning("cannot make task cgroups under %s (%s)", base, exc)
            for made in parents.values():
                _remove_tree(made)
            return None
        parents[controller] = parent
    return CgroupTree(1, parents)


def _read_words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []
