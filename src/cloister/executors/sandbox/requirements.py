"""What a host must give the execution service for the full task sandbox, and the check that it
does: the service refuses to start without it, rather than run tasks with fewer layers.

Each shortfall names what is missing and how to grant it, for a host, a systemd unit or a
container alike (``docs/containers.md`` has the container runtimes' settings). The last word is a
real task: one built-in task run in a sandbox the way every task will be, since only a run shows
what a runtime's seccomp profile, AppArmor or read-only mounts forbid.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from cloister.executors.base import TaskFiles
from cloister.executors.sandbox.cgroups import open_cgroups
from cloister.executors.sandbox.host import Sandbox, SandboxUnavailableError, missing_requirement
from cloister.functions import FunctionError
from cloister.model.executors import ExecutorKind
from cloister.model.tasks import StagedTask

CAPABILITIES = {
    "CAP_DAC_OVERRIDE": 1,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_NET_ADMIN": 12,
    "CAP_SYS_ADMIN": 21,
}
"""The capabilities (name → number) the service needs as root: the template's five (namespaces
and mounts, task uids, kills, mount points in a task-owned ``/tmp``; see ``host.bwrap_command``)
and ``CAP_NET_ADMIN``, with which bubblewrap brings up the loopback of the empty network namespace.
Measured by withholding each from the bounding set; nothing else is needed."""

_SELF_TEST_MESSAGE = "sandbox self-test"
_HOW = "docs/containers.md says what the task sandbox needs"


def shortfalls() -> list[str]:
    """What this process lacks for the full sandbox, each with how to grant it; empty when nothing.

    Starts no sandbox; a cgroup tree is made and removed to see that one can be.
    """
    lacking: list[str] = []
    missing = missing_requirement()
    if missing is not None:
        lacking.append(missing)
    if os.geteuid() != 0:
        lacking.append(
            f"not root: the service runs as uid {os.geteuid()}, and only root can give each task a host uid "
            "and cgroups of its own; run the execution service as root (uid 0 in its container)"
        )
        return lacking
    absent = [name for name, number in CAPABILITIES.items() if not _effective(number)]
    if absent:
        lacking.append(
            f"capabilities missing: {', '.join(absent)}; grant them (systemd: leave CapabilityBoundingSet alone; "
            "containers: add them to the execution container)"
        )
        return lacking  # without them, no cgroup can be judged fairly
    tree = open_cgroups()
    if tree is None:
        lacking.append(
            "no cgroup hierarchy with the memory and pids controllers that the service may write; "
            "give one (cgroup v2: a writable /sys/fs/cgroup with both controllers delegated, systemd Delegate=yes; "
            "cgroup v1: both controllers mounted)"
        )
    else:
        tree.close()
    return lacking


def check_host() -> None:
    """Refuse a host that lacks anything :func:`shortfalls` finds.

    Raises:
        SandboxUnavailableError: naming everything missing and how to grant it.
    """
    lacking = shortfalls()
    if lacking:
        raise SandboxUnavailableError(f"sandbox unavailable: {'; '.join(lacking)}; {_HOW}")


async def check_full_isolation(sandbox: Sandbox) -> str:
    """Check the host, then run one built-in task in ``sandbox`` as every task will be run.

    Returns:
        How tasks are isolated (``Sandbox.isolation``), which starts with ``full``.

    Raises:
        SandboxUnavailableError: the host lacks something, the test task could not be
            isolated or run, or isolation is less than full; the reason says which.
    """
    check_host()
    task = StagedTask(
        uuid.uuid4(),
        uuid.uuid4(),
        "",
        ExecutorKind.BUILTIN,
        ExecutorKind.BUILTIN,
        "builtin-echo",
        {"message": _SELF_TEST_MESSAGE},
        b"",
        {},
        {},
    )
    try:
        outputs = await sandbox.run(ExecutorKind.BUILTIN, task, TaskFiles())
    except FunctionError as exc:
        raise SandboxUnavailableError(
            f"sandbox unavailable: a test task failed ({exc.reason}); the runtime must allow new namespaces "
            f"and mounts to a root holding {', '.join(CAPABILITIES)}; {_HOW}"
        ) from None
    if outputs.return_value != _SELF_TEST_MESSAGE.encode():
        raise SandboxUnavailableError("sandbox unavailable: a test task returned the wrong value")
    isolation = sandbox.isolation()
    if not isolation.startswith("full"):
        raise SandboxUnavailableError(f"sandbox unavailable: isolation is not full ({isolation}); {_HOW}")
    return isolation


def _effective(number: int) -> bool:
    """Whether capability ``number`` is in this process's effective set."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> number & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False
