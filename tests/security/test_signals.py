"""Attack class 5: signals without kill.

The seccomp filter denies kill, tkill, tgkill, rt_(tg)sigqueueinfo and pidfd_send_signal, but
the kernel also delivers signals on a task's behalf: ``fcntl(F_SETOWN, pid)`` with
``F_SETSIG(SIGKILL)`` and ``O_ASYNC`` makes the next I/O readiness on a pipe (or a pty) send
SIGKILL to that pid, with the permission of the task's own uid (which tasks must therefore not
share with each other or the template). Each attack targets pid 1, the parent, the process group, a pid range or a
concurrently running victim of another tenant. The call must be refused (the errno is
recorded), the victim must finish with its exact output, and the platform must stay healthy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hostile_kit import (
    BASE_LIMITS,
    Arena,
    attack_beside_victim,
    expect_contained,
    leaks,
    open_arena,
    python_payload,
)

VICTIM_SLEEP = 1.2
DIED = ("the sandbox worker died", "the function's process died")
"""Failure reasons that mean the attack killed the sandbox (and the attacker with it)."""

SIGIO = r'''
import fcntl
import struct

F_SETSIG, F_SETOWN_EX, F_OWNER_TID, F_OWNER_PID = 10, 15, 0, 1
SIGKILL = 9


def targets(kind):
    """The pids an attack aims at, other than this task itself; [] when none is reachable."""
    me = _os.getpid()
    if kind == "parent":
        found = [_os.getppid()]
    elif kind == "pid-1":
        found = [1]
    elif kind == "victim":
        found = [pid for pid in visible_pids(4096) if pid not in (1, 2, me, _os.getppid())]
    elif kind == "range":
        found = list(range(1, 65))
    else:
        raise ValueError(kind)
    return [pid for pid in found if pid not in (0, me)]


def arm(fd, set_owner, async_by_ioctl=False):
    """Make readiness on ``fd`` send SIGKILL to its owner; the errno of the first refusal, else None."""
    try:
        set_owner(fd)
        fcntl.fcntl(fd, F_SETSIG, SIGKILL)
        if async_by_ioctl:
            fcntl.ioctl(fd, 0x5452, struct.pack("i", 1))  # FIOASYNC
        else:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _os.O_ASYNC)
    except OSError as exc:
        return os_error(exc)
    return None


def sigio_attack(kind, set_owner_for, async_by_ioctl=False):
    aims = targets(kind)
    if not aims:
        return report("CONTAINED", "no %s other than myself is reachable" % kind)
    armed, refused = [], []
    for pid in aims:
        read_end, write_end = _os.pipe()
        error = arm(read_end, set_owner_for(pid), async_by_ioctl)
        if error:
            refused.append((pid, error))
            _os.close(read_end)
            _os.close(write_end)
        else:
            armed.append((pid, write_end))
    for pid, write_end in armed:
        _os.write(write_end, b"!")  # readiness: the kernel sends SIGKILL to the owner now
    _time.sleep(0.3)
    if armed:
        return report("BREACHED", "SIGKILL armed and fired at %s (refused: %s)" % ([p for p, _ in armed], refused[:5]))
    return report("CONTAINED", "refused: %s" % refused[:8])
'''

FCNTL_SETOWN = python_payload(
    SIGIO
    + r"""
def entrypoint(argv):
    return sigio_attack(arguments(argv)["kind"], lambda pid: lambda fd: fcntl.fcntl(fd, fcntl.F_SETOWN, pid))
"""
)

FCNTL_SETOWN_IOCTL_FIOASYNC = python_payload(
    SIGIO
    + r"""
def entrypoint(argv):
    owner = lambda pid: lambda fd: fcntl.fcntl(fd, fcntl.F_SETOWN, pid)
    return sigio_attack(arguments(argv)["kind"], owner, async_by_ioctl=True)
"""
)

FCNTL_SETOWN_PROCESS_GROUP = python_payload(
    SIGIO
    + r"""
def entrypoint(argv):
    group = _os.getpgrp()
    if group == _os.getpid():
        return report("CONTAINED", "my process group is my own (%d)" % group)
    read_end, write_end = _os.pipe()
    error = arm(read_end, lambda fd: fcntl.fcntl(fd, fcntl.F_SETOWN, -group))
    if error:
        return report("CONTAINED", "F_SETOWN(-%d): %s" % (group, error))
    _os.write(write_end, b"!")
    _time.sleep(0.3)
    return report("BREACHED", "SIGKILL armed and fired at process group %d" % group)
"""
)

FCNTL_SETOWN_EX = python_payload(
    SIGIO
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    kind = F_OWNER_TID if args["owner"] == "tid" else F_OWNER_PID
    owner = lambda pid: lambda fd: fcntl.fcntl(fd, F_SETOWN_EX, struct.pack("ii", kind, pid))
    return sigio_attack(args["kind"], owner)
"""
)

RAW_FCNTL_SETOWN = python_payload(
    SIGIO
    + r"""
def raw_owner(pid):
    def set_owner(fd):
        for command, value in ((8, pid), (F_SETSIG, SIGKILL), (4, 0o20000 | 0o4000)):  # F_SETOWN, F_SETFL
            result, error = sysc("fcntl", fd, command, value)
            if result < 0:
                raise OSError(getattr(_errno, error, 1), "fcntl(%d): %s" % (command, error))
    return set_owner


def entrypoint(argv):
    return sigio_attack(arguments(argv)["kind"], raw_owner)
"""
)

RAW_FCNTL_SETOWN_EX = python_payload(
    SIGIO
    + r"""
class Owner(_ctypes.Structure):
    _fields_ = [("type", _ctypes.c_int), ("pid", _ctypes.c_int)]


def raw_owner(pid):
    def set_owner(fd):
        result, error = sysc("fcntl", fd, F_SETOWN_EX, _ctypes.byref(Owner(F_OWNER_PID, pid)))
        if result < 0:
            raise OSError(getattr(_errno, error, 1), "F_SETOWN_EX: " + error)
    return set_owner


def entrypoint(argv):
    return sigio_attack(arguments(argv)["kind"], raw_owner)
"""
)

PTY_SETOWN = python_payload(
    SIGIO
    + r"""
def entrypoint(argv):
    aims = targets("parent")
    if not aims:
        return report("CONTAINED", "no parent reachable")
    try:
        master, slave = _os.openpty()
    except OSError as exc:
        return report("CONTAINED", "openpty: " + os_error(exc))
    error = arm(master, lambda fd: fcntl.fcntl(fd, fcntl.F_SETOWN, aims[0]))
    if error:
        return report("CONTAINED", "pty F_SETOWN(%d): %s" % (aims[0], error))
    _os.write(slave, b"!\n")
    _time.sleep(0.3)
    return report("BREACHED", "SIGKILL armed on a pty master and fired at %d" % aims[0])
"""
)

IOCTL_FIOSETOWN = python_payload(
    SIGIO
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    request = {"FIOSETOWN": 0x8901, "SIOCSPGRP": 0x8902}[args["request"]]
    owner = lambda pid: lambda fd: fcntl.ioctl(fd, request, struct.pack("i", pid))
    return sigio_attack("parent", owner)
"""
)

RAW_SIGNAL_CALLS = python_payload(r"""
def entrypoint(argv):
    call = arguments(argv)["call"]
    parent = _os.getppid()
    info = _ctypes.create_string_buffer(128)
    siginfo = (9).to_bytes(4, "little") + (0).to_bytes(4, "little") + (-1).to_bytes(4, "little", signed=True)
    _ctypes.memmove(info, siginfo, 12)  # si_signo SIGKILL, si_errno 0, si_code SI_QUEUE
    if call == "kill":
        result, error = sysc("kill", parent, 9)
    elif call == "kill-everyone":
        result, error = sysc("kill", -1, 0)
    elif call == "tkill":
        result, error = sysc("tkill", parent, 9)
    elif call == "tgkill":
        result, error = sysc("tgkill", parent, parent, 9)
    elif call == "rt_sigqueueinfo":
        result, error = sysc("rt_sigqueueinfo", parent, 9, info)
    elif call == "rt_tgsigqueueinfo":
        result, error = sysc("rt_tgsigqueueinfo", parent, parent, 9, info)
    elif call == "pidfd":
        result, error = sysc("pidfd_open", parent, 0)
        if result >= 0:
            result, error = sysc("pidfd_send_signal", result, 9, None, 0)
    elif call == "timer_create":
        event = _ctypes.create_string_buffer(64)  # sigevent: SIGEV_THREAD_ID (4) to the parent's pid
        _ctypes.memmove(event, (0).to_bytes(8, "little") + (9).to_bytes(4, "little") + (4).to_bytes(4, "little")
                        + parent.to_bytes(4, "little"), 20)
        timer = _ctypes.c_int(0)
        result, error = sysc("timer_create", 0, event, _ctypes.byref(timer))
    else:
        raise ValueError(call)
    if result >= 0:
        return report("BREACHED", "%s on the parent (%d) returned %d" % (call, parent, result))
    if error in REFUSALS:
        return report("CONTAINED", "%s: %s" % (call, error))
    return report("BREACHED", "%s reached the kernel: %s" % (call, error))
""")

# case -> (payload, arguments)
ATTACKS: dict[str, tuple[bytes, dict[str, str]]] = {
    "fcntl-setown-sigkill-parent": (FCNTL_SETOWN, {"kind": "parent"}),
    "fcntl-setown-sigkill-pid-1": (FCNTL_SETOWN, {"kind": "pid-1"}),
    "fcntl-setown-sigkill-victim": (FCNTL_SETOWN, {"kind": "victim"}),
    "fcntl-setown-sigkill-pid-range": (FCNTL_SETOWN, {"kind": "range"}),
    "fcntl-setown-sigkill-process-group": (FCNTL_SETOWN_PROCESS_GROUP, {}),
    "fcntl-setown-ioctl-fioasync-parent": (FCNTL_SETOWN_IOCTL_FIOASYNC, {"kind": "parent"}),
    "fcntl-setown-ex-pid-parent": (FCNTL_SETOWN_EX, {"kind": "parent", "owner": "pid"}),
    "fcntl-setown-ex-tid-victim": (FCNTL_SETOWN_EX, {"kind": "victim", "owner": "tid"}),
    "ctypes-fcntl-setown-parent": (RAW_FCNTL_SETOWN, {"kind": "parent"}),
    "ctypes-fcntl-setown-victim": (RAW_FCNTL_SETOWN, {"kind": "victim"}),
    "ctypes-fcntl-setown-ex-pid-1": (RAW_FCNTL_SETOWN_EX, {"kind": "pid-1"}),
    "pty-setown-sigkill-parent": (PTY_SETOWN, {}),
    "ioctl-fiosetown-parent": (IOCTL_FIOSETOWN, {"request": "FIOSETOWN"}),
    "ioctl-siocspgrp-parent": (IOCTL_FIOSETOWN, {"request": "SIOCSPGRP"}),
    "ctypes-kill-parent": (RAW_SIGNAL_CALLS, {"call": "kill"}),
    "ctypes-kill-minus-one": (RAW_SIGNAL_CALLS, {"call": "kill-everyone"}),
    "ctypes-tkill-parent": (RAW_SIGNAL_CALLS, {"call": "tkill"}),
    "ctypes-tgkill-parent": (RAW_SIGNAL_CALLS, {"call": "tgkill"}),
    "ctypes-rt-sigqueueinfo-parent": (RAW_SIGNAL_CALLS, {"call": "rt_sigqueueinfo"}),
    "ctypes-rt-tgsigqueueinfo-parent": (RAW_SIGNAL_CALLS, {"call": "rt_tgsigqueueinfo"}),
    "ctypes-pidfd-send-signal-parent": (RAW_SIGNAL_CALLS, {"call": "pidfd"}),
    "ctypes-timer-create-thread-id-parent": (RAW_SIGNAL_CALLS, {"call": "timer_create"}),
}


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with open_arena(tmp_path_factory.mktemp("signals"), BASE_LIMITS) as running:
        yield running


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_signal_attack_is_refused_and_the_victim_finishes(
    arena: Arena, case: str, record_verdict: Callable[[str, object], None]
) -> None:
    payload, args = ATTACKS[case]
    outcome, victim = attack_beside_victim(arena, payload, args, sleep=VICTIM_SLEEP)
    problems = []
    try:
        expect_contained(outcome, record_verdict, breached_reasons=DIED)
    except AssertionError as error:
        problems.append(str(error).split("\n")[0])
    try:
        victim.check()
    except AssertionError as error:
        problems.append(f"victim harmed: {str(error).splitlines()[0]}")
    if leaks(outcome.everything, victim.secrets):
        problems.append("the victim's secrets reached the attacker")
    assert not problems, " / ".join(problems)
    arena.assert_healthy()
