"""A seccomp filter for task children, built with libseccomp through ctypes.

Everything is allowed except what lets a function reach beyond its task: new processes
(threads stay allowed), program execution, sockets, sending signals, tracing, namespaces and
mounts, kernel keyrings and BPF. Denied calls fail with EPERM, so the function
sees an ordinary ``PermissionError`` and its task fails with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools

_SCMP_ACT_ALLOW = 0x7FFF0000
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
)  # fmt: skip


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
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO(code)


_prepared: int | None = None


def preload() -> None:
    """Build the filter now (in the zygote), so each forked child only loads it.

    Nothing in it depends on the child: signals are denied outright rather than allowed to the
    child itself, which would need its pid.
    """
    global _prepared
    _prepared = _build()


def install() -> None:
    """Load the filter into this process (and its threads to come); irreversible.

    Raises:
        SeccompUnavailableError: the filter could not be loaded: the caller must not run user code.
    """
    lib = _library()
    context = _prepared if _prepared is not None else _build()
    if lib.seccomp_load(context) != 0:
        raise SeccompUnavailableError("seccomp_load failed")


def _build() -> int:
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

    for name in (*_DENIED, "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        rule(name, deny)
    # clone: threads only. clone3 answers ENOSYS so libc falls back to clone, which is filtered.
    rule("clone", deny, _Arg(0, _SCMP_CMP_MASKED_EQ, _CLONE_THREAD, 0))
    rule("clone3", _errno_action(errno.ENOSYS))
    return context
