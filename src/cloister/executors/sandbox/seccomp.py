"""A seccomp filter for task processes, built with libseccomp through ctypes.

Everything is allowed except what lets a function reach beyond its task: new processes
(threads stay allowed), program execution, sockets, sending signals by any route (kill and
friends, and ``fcntl``/``ioctl`` that make the kernel signal a chosen process), scheduling or
limiting anything but itself, SysV and POSIX message IPC, tracing, namespaces and mounts,
kernel keyrings, BPF, io_uring, and ``memfd_create`` unless a memory cgroup counts it. Denied
calls fail with EPERM, so the function sees an ordinary ``PermissionError`` and its task fails
with it.

Why a deny-list: CPython, numpy, OpenCV and wasmtime together use a wide, version-dependent
set of syscalls, and an allow-list that misses one fails tasks in ways users cannot diagnose.
Each denial here closes a known route out; the namespaces, uid and cgroup around the process
contain what the filter lets through.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_NE = 1
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7
_CLONE_THREAD = 0x00010000

_DENIED = (
    "fork", "vfork", "execve", "execveat",
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "move_mount", "open_tree", "fsopen", "fsmount",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "init_module", "finit_module", "delete_module", "kexec_load", "reboot", "swapon", "swapoff",
    "sethostname", "setdomainname", "acct", "quotactl", "syslog",
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr", "process_madvise", "migrate_pages", "move_pages", "kcmp",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie", "vhangup",
    "iopl", "ioperm", "personality", "clock_settime", "settimeofday", "adjtimex", "clock_adjtime",
    "io_uring_enter", "io_uring_register", "mknod", "mknodat", "landlock_create_ruleset",
)  # fmt: skip

_SIGNALS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
_SELF_ONLY = (  # (syscall, index of its pid argument): allowed on the calling thread (0) only
    ("setpriority", 1), ("sched_setaffinity", 0), ("sched_setscheduler", 0), ("sched_setparam", 0),
    ("sched_setattr", 0), ("ioprio_set", 1), ("prlimit64", 0),
)  # fmt: skip
_F_SETFL, _F_SETOWN, _F_SETSIG, _F_SETOWN_EX, _F_SETLEASE, _F_NOTIFY = 4, 8, 10, 15, 1024, 1026
_O_ASYNC = 0o20000
_FIOSETOWN, _SIOCSPGRP, _FIOASYNC, _TIOCSPGRP, _TIOCSTI = 0x8901, 0x8902, 0x5452, 0x5410, 0x5412
_PR_SET_PDEATHSIG, _PR_SET_PTRACER = 1, 0x59616D61


class _Arg(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class SeccompUnavailableError(RuntimeError):
    pass


@functools.cache
def _library() -> ctypes.CDLL:
    """libseccomp, loaded once (the zygote loads it before forking, where ldconfig is not reachable)."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        name = ctypes.util.find_library("seccomp")
        if name is None:
            raise SeccompUnavailableError("libseccomp is not installed (apt-get install libseccomp2)") from None
        lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_Arg)
    ]  # fmt: skip
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def require_library() -> None:
    """Load libseccomp now, so that a host without it is found out before any task.

    Raises:
        SeccompUnavailableError: libseccomp is not installed.
    """
    _library()


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO(code)


class _Program(ctypes.Structure):
    """The kernel's ``struct sock_fprog``: a compiled filter, ready for ``PR_SET_SECCOMP``."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_INSTRUCTION_BYTES = 8  # sizeof(struct sock_filter)
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _PR_SET_NO_NEW_PRIVS = 22, 2, 38
_compiled: dict[bool, tuple[_Program, ctypes.Array[ctypes.c_char]]] = {}


def preload() -> None:
    """Compile both filters now (in the template), so each task's process only hands one to the
    kernel: compiling with libseccomp in every task cost it 1 to 3 ms of copied pages and CPU.

    Nothing in them depends on the task: signals are denied outright rather than allowed to the
    task itself, which would need its pid.
    """
    _libc()
    for memfd in (False, True):
        _compiled[memfd] = _compile(memfd=memfd)


def install(*, memfd: bool) -> None:
    """Load the filter into this process (and its threads to come); irreversible.

    As libseccomp's own load does: no new privileges first (an unprivileged process may then
    install a filter), then the filter, for the calling thread (a task's process has no other).

    Args:
        memfd: allow ``memfd_create`` (only where a memory cgroup counts what memfds hold).

    Raises:
        SeccompUnavailableError: the filter could not be loaded: the caller must not run user code.
    """
    program, _ = _compiled.get(memfd) or _compile(memfd=memfd)
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SeccompUnavailableError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        raise SeccompUnavailableError(f"the kernel refused the seccomp filter: errno {ctypes.get_errno()}")


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _compile(*, memfd: bool) -> tuple[_Program, ctypes.Array[ctypes.c_char]]:
    """The filter as BPF, with the buffer that holds its instructions (kept alive with it)."""
    lib = _library()
    context = _build(memfd=memfd)
    fd = os.memfd_create("seccomp-filter", os.MFD_CLOEXEC)
    try:
        exported = lib.seccomp_export_bpf(context, fd)
        os.lseek(fd, 0, os.SEEK_SET)
        code = b""
        while chunk := os.read(fd, 65536):
            code += chunk
    finally:
        lib.seccomp_release(context)
        os.close(fd)
    if exported != 0 or not code or len(code) % _INSTRUCTION_BYTES:
        raise SeccompUnavailableError("libseccomp could not compile the filter")
    buffer = ctypes.create_string_buffer(code, len(code))
    return _Program(len(code) // _INSTRUCTION_BYTES, ctypes.addressof(buffer)), buffer


def _build(*, memfd: bool) -> int:
    lib = _library()
    context = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not context:
        raise SeccompUnavailableError("seccomp_init failed")
    deny = _errno_action(errno.EPERM)

    def rule(name: str, action: int, *args: _Arg) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a syscall on this architecture
        array = (_Arg * len(args))(*args) if args else None
        if lib.seccomp_rule_add_array(context, action, number, len(args), array) != 0:
            raise SeccompUnavailableError(f"cannot add a seccomp rule for {name}")

    for name in (*_DENIED, *_SIGNALS, *(() if memfd else ("memfd_create",))):
        rule(name, deny)
    for name, index in _SELF_ONLY:
        rule(name, deny, _Arg(index, _SCMP_CMP_NE, 0, 0))
    # Routes by which the kernel would signal a process the function names, or keep it alive.
    for command in (_F_SETOWN, _F_SETSIG, _F_SETOWN_EX, _F_SETLEASE, _F_NOTIFY):
        rule("fcntl", deny, _Arg(1, _SCMP_CMP_EQ, command, 0))
    rule("fcntl", deny, _Arg(1, _SCMP_CMP_EQ, _F_SETFL, 0), _Arg(2, _SCMP_CMP_MASKED_EQ, _O_ASYNC, _O_ASYNC))
    for request in (_FIOSETOWN, _SIOCSPGRP, _FIOASYNC, _TIOCSPGRP, _TIOCSTI):
        rule("ioctl", deny, _Arg(1, _SCMP_CMP_EQ, request, 0))
    for option in (_PR_SET_PDEATHSIG, _PR_SET_PTRACER):
        rule("prctl", deny, _Arg(0, _SCMP_CMP_EQ, option, 0))
    # clone: threads only. clone3 answers ENOSYS so libc falls back to clone, which is filtered.
    rule("clone", deny, _Arg(0, _SCMP_CMP_MASKED_EQ, _CLONE_THREAD, 0))
    rule("clone3", _errno_action(errno.ENOSYS))
    return context
