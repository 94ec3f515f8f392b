"""The steps that turn a fresh fork of the template into a task's own sandbox, before any tenant
code or data reaches it.

The template forks the sandbox's process as pid 1 of a new pid namespace. That process, in
order: joins its cgroups, unshares every other namespace (mount, IPC, UTS, network, cgroup),
mounts a private size-limited tmpfs for scratch (``/tmp``) and for ``/dev/shm``, hides
``/dev/pts`` and makes ``/dev`` read-only, then takes the task's own host uid (dropping every
capability) and asks to be killed with the template. The template holds ``CAP_SYS_ADMIN``,
``CAP_SETUID``, ``CAP_SETGID``, ``CAP_KILL`` (so that its death, or its kill on wall time or
cancel, reaches a process running as another uid) and ``CAP_DAC_OVERRIDE`` (mount points in the
task-owned ``/tmp``) for this and nothing else; the task's process has none.
"""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET
"""What the sandbox's process unshares itself; its pid namespace it was forked into."""

_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38

SCRATCH = "/tmp"  # noqa: S108 - a private tmpfs of the task's own, mounted per task
SHM = "/dev/shm"  # noqa: S108 - likewise

_libc = ctypes.CDLL(None, use_errno=True)


class IsolationError(OSError):
    """A step of the isolation failed: the task must not run."""


@dataclass(frozen=True)
class TaskIdentity:
    """Who the task is on the host: its uid (and gid), or None to keep the template's (user
    namespace mode, where only one uid is mapped)."""

    uid: int | None
    scratch_bytes: int
    shm_bytes: int
    rebinds: tuple[tuple[str, str], ...] = ()
    """(alias, path): runtime directories under the scratch mount point, bound again on top of it."""


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise IsolationError(code, f"{what}: {os.strerror(code)}")


def _mount(source: str, target: str, fs_type: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fs_type.encode() if fs_type else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def join_cgroups(procs_fds: list[int]) -> None:
    """Move this process into the task's groups (before it has any children or threads)."""
    for fd in procs_fds:
        try:
            os.write(fd, b"0")
        except OSError as exc:
            raise IsolationError(exc.errno, f"join the task's cgroup: {exc.strerror}") from None
        finally:
            os.close(fd)


def unshare_pid_namespace() -> None:
    """Make this process's next child pid 1 of a new pid namespace (this process stays where it is)."""
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")


def join_pid_namespace(pidfd: int) -> None:
    """Make this process's next children land in the pid namespace of the process ``pidfd`` names."""
    _check(_libc.setns(pidfd, CLONE_NEWPID), "setns(CLONE_NEWPID)")


def enter_namespaces(identity: TaskIdentity) -> None:
    """Unshare every other namespace and mount the task's private file systems."""
    _check(_libc.unshare(NAMESPACES), "unshare")
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE)
    owner = "" if identity.uid is None else f",uid={identity.uid},gid={identity.uid}"
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _mount("tmpfs", SCRATCH, "tmpfs", flags, f"size={identity.scratch_bytes},mode=0700{owner}")
    for alias, path in identity.rebinds:  # a runtime installed under /tmp stays reachable
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(alias, path, None, _MS_BIND | _MS_REC)
        _mount("none", path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID)
    _mount("tmpfs", SHM, "tmpfs", flags, f"size={identity.shm_bytes},mode=0700{owner}")
    # The template's devpts instance is shared by every task: hide it (no ptys, no pty numbers).
    _mount("tmpfs", "/dev/pts", "tmpfs", flags | _MS_RDONLY, "size=4k,mode=0555")
    _mount("none", "/dev", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NOEXEC)


def die_with_parent() -> None:
    _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def become_task(identity: TaskIdentity) -> None:
    """Take the task's host uid and drop every capability, irreversibly (no new privileges)."""
    if identity.uid is not None:
        os.setgroups([])
        os.setresgid(identity.uid, identity.uid, identity.uid)
        os.setresuid(identity.uid, identity.uid, identity.uid)  # clears every capability
    else:
        _drop_capabilities()
    # A changed uid clears the parent-death signal, so it is set (again) only now.
    die_with_parent()
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    _check(_libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    os.chdir(SCRATCH)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> None:
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")
