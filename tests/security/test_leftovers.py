"""Attack classes 4 and 7: things outlive the task, and the order of tasks shows through.

Class 4: one tenant's task leaves a stash wherever it can write (its cwd, /tmp, /dev/shm, /dev,
/var/tmp, the work directory, SysV and POSIX IPC objects, a memfd, an xattr, an abstract
socket name); a later task of another tenant looks for it. Nothing may be found: every place a
task can write must be private to it and gone when it ends. Each writer runs beside a short
victim task of a third tenant, which must still finish with its exact output.

Class 7: pids are handed out in sequence by one shared pid namespace, so a task can count how
many tasks ran before it. Two tasks with others in between must see the same pid.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from hostile_kit import (
    BASE_LIMITS,
    ECHO,
    Arena,
    expect_contained,
    leaks,
    open_arena,
    python_payload,
    start_victim,
)

FILE_WRITER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    path = args["where"].replace("NAME", args["name"])
    try:
        with open(path, "w") as handle:
            handle.write(args["token"])
    except OSError as exc:
        return report("CONTAINED", "cannot write %s: %s" % (path, os_error(exc)))
    return report("BREACHED", "stashed at " + path)
""")

FILE_READER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    path = args["where"].replace("NAME", args["name"])
    try:
        with open(path) as handle:
            found = handle.read()
    except OSError as exc:
        return report("CONTAINED", "nothing at %s: %s" % (path, os_error(exc)))
    return report("BREACHED", "found %r at %s" % (found, path))
""")

NUMPY_WRITER = python_payload(r"""
import numpy as np


def entrypoint(argv):
    args = arguments(argv)
    path = "/dev/shm/" + args["name"] + ".npy"
    try:
        np.save(path, np.frombuffer(args["token"].encode(), dtype=np.uint8))
    except OSError as exc:
        return report("CONTAINED", "np.save refused: " + os_error(exc))
    return report("BREACHED", "stashed at " + path)
""")

NUMPY_READER = python_payload(r"""
import numpy as np


def entrypoint(argv):
    args = arguments(argv)
    path = "/dev/shm/" + args["name"] + ".npy"
    try:
        found = np.load(path).tobytes().decode()
    except OSError as exc:
        return report("CONTAINED", "np.load: " + os_error(exc))
    return report("BREACHED", "found %r at %s" % (found, path))
""")

SYSV_SHM_WRITER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    segment, error = sysc("shmget", int(args["key"]), 4096, 0o1666)  # IPC_CREAT
    if segment < 0:
        return report("CONTAINED", "shmget: " + error)
    libc.shmat.restype = _ctypes.c_void_p
    address = libc.shmat(int(segment), None, 0)
    if address in (None, _ctypes.c_void_p(-1).value):
        return report("CONTAINED", "shmat: " + ename(_ctypes.get_errno()))
    _ctypes.memmove(address, args["token"].encode(), len(args["token"]))
    libc.shmdt(_ctypes.c_void_p(address))
    return report("BREACHED", "stashed in SysV segment key %s" % args["key"])
""")

SYSV_SHM_READER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    segment, error = sysc("shmget", int(args["key"]), 0, 0)
    if segment < 0:
        return report("CONTAINED", "no segment with key %s: %s" % (args["key"], error))
    libc.shmat.restype = _ctypes.c_void_p
    address = libc.shmat(int(segment), None, 0o10000)
    if address in (None, _ctypes.c_void_p(-1).value):
        return report("BREACHED", "segment with key %s exists (attach: %s)" % (args["key"], ename(_ctypes.get_errno())))
    return report("BREACHED", "found %r in SysV segment %s" % (_ctypes.string_at(address, 64), args["key"]))
""")

POSIX_SHM_WRITER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    fd = libc.shm_open(("/" + args["name"]).encode(), 0o102, 0o600)  # O_CREAT | O_RDWR
    if fd < 0:
        return report("CONTAINED", "shm_open: " + ename(_ctypes.get_errno()))
    _os.write(fd, args["token"].encode())
    return report("BREACHED", "stashed in POSIX shm /" + args["name"])
""")

POSIX_SHM_READER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    fd = libc.shm_open(("/" + args["name"]).encode(), 0, 0)
    if fd < 0:
        return report("CONTAINED", "shm_open: " + ename(_ctypes.get_errno()))
    return report("BREACHED", "found %r in POSIX shm /%s" % (_os.read(fd, 200), args["name"]))
""")

MQUEUE_WRITER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    queue, error = sysc("mq_open", args["name"].encode(), 0o102, 0o600, None)
    if queue < 0:
        return report("CONTAINED", "mq_open: " + error)
    token = args["token"].encode()
    result, error = sysc("mq_timedsend", queue, token, len(token), 0, None)
    if result < 0:
        return report("CONTAINED", "mq_timedsend: " + error)
    return report("BREACHED", "stashed in message queue " + args["name"])
""")

MQUEUE_READER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    queue, error = sysc("mq_open", args["name"].encode(), 0o4000, 0, None)  # O_RDONLY | O_NONBLOCK
    if queue < 0:
        return report("CONTAINED", "mq_open: " + error)
    buffer = _ctypes.create_string_buffer(1 << 16)
    count, error = sysc("mq_timedreceive", queue, buffer, 1 << 16, None, None)
    return report("BREACHED", "queue %s exists; received %r %s" % (args["name"], buffer.raw[:max(count, 0)], error))
""")

SYSV_MSG_WRITER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    queue, error = sysc("msgget", int(args["key"]), 0o1666)
    if queue < 0:
        return report("CONTAINED", "msgget: " + error)
    message = _ctypes.create_string_buffer(8 + 64)
    _ctypes.memmove(message, (1).to_bytes(8, "little") + args["token"].encode(), 8 + len(args["token"]))
    result, error = sysc("msgsnd", queue, message, 64, 0o4000)
    if result < 0:
        return report("CONTAINED", "msgsnd: " + error)
    return report("BREACHED", "stashed in SysV message queue key %s" % args["key"])
""")

SYSV_MSG_READER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    queue, error = sysc("msgget", int(args["key"]), 0)
    if queue < 0:
        return report("CONTAINED", "msgget: " + error)
    message = _ctypes.create_string_buffer(8 + 64)
    count, error = sysc("msgrcv", queue, message, 64, 0, 0o4000)
    received = message.raw[8 : 8 + max(count, 0)]
    return report("BREACHED", "queue %s exists; received %r %s" % (args["key"], received, error))
""")

SYSV_SEM_WRITER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    semaphores, error = sysc("semget", int(args["key"]), 1, 0o1666)
    if semaphores < 0:
        return report("CONTAINED", "semget: " + error)
    result, error = sysc("semctl", semaphores, 0, 16, 4242)  # SETVAL
    if result < 0:
        return report("CONTAINED", "semctl(SETVAL): " + error)
    return report("BREACHED", "stashed 4242 in SysV semaphore key %s" % args["key"])
""")

SYSV_SEM_READER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    semaphores, error = sysc("semget", int(args["key"]), 1, 0)
    if semaphores < 0:
        return report("CONTAINED", "semget: " + error)
    value, error = sysc("semctl", semaphores, 0, 12, 0)  # GETVAL
    return report("BREACHED", "semaphore key %s exists with value %s %s" % (args["key"], value, error))
""")

MEMFD_WRITER = python_payload(r"""
import threading


def entrypoint(argv):
    args = arguments(argv)
    fd = _os.memfd_create(args["name"], 0)
    _os.write(fd, args["token"].encode())
    threading.Thread(target=_time.sleep, args=(3600,), daemon=True).start()  # hoping to outlive the task
    return report("BREACHED", "memfd %d holds the stash" % fd)
""")

DESCRIPTOR_READER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    found = []
    for fd in range(1024):
        try:
            _os.lseek(fd, 0, 0)
            data = _os.read(fd, 4096)
        except OSError:
            continue
        if args["token"].encode() in data:
            found.append(fd)
    if found:
        return report("BREACHED", "the stash is readable through descriptors %s" % found)
    return report("CONTAINED", "no inherited descriptor holds the stash")
""")

XATTR_WRITER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    refused = []
    for path in ("/dev/shm", "/dev", "../..", "/tmp"):
        try:
            _os.setxattr(path, "user." + args["name"], args["token"].encode())
            return report("BREACHED", "stashed in an xattr of " + path)
        except OSError as exc:
            refused.append(path + ": " + os_error(exc))
    return report("CONTAINED", refused)
""")

XATTR_READER = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    missing = []
    for path in ("/dev/shm", "/dev", "../..", "/tmp"):
        try:
            return report("BREACHED", "found %r in an xattr of %s" % (_os.getxattr(path, "user." + args["name"]), path))
        except OSError as exc:
            missing.append(path + ": " + os_error(exc))
    return report("CONTAINED", missing)
""")

ABSTRACT_SOCKET_WRITER = python_payload(r"""
import socket


def entrypoint(argv):
    args = arguments(argv)
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind("\0" + args["name"])
        listener.listen(1)
    except OSError as exc:
        return report("CONTAINED", "abstract socket: " + os_error(exc))
    return report("BREACHED", "bound abstract socket @" + args["name"])
""")

ABSTRACT_SOCKET_READER = python_payload(r"""
import socket


def entrypoint(argv):
    args = arguments(argv)
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect("\0" + args["name"])
    except OSError as exc:
        return report("CONTAINED", "abstract socket: " + os_error(exc))
    return report("BREACHED", "connected to @" + args["name"])
""")

# case -> (writer, reader, "where" argument for the file pair)
STASHES: dict[str, tuple[bytes, bytes, str]] = {
    "cwd-file": (FILE_WRITER, FILE_READER, "NAME"),
    "tmp-file": (FILE_WRITER, FILE_READER, "/tmp/NAME"),
    "dev-shm-file": (FILE_WRITER, FILE_READER, "/dev/shm/NAME"),
    "dev-file": (FILE_WRITER, FILE_READER, "/dev/NAME"),
    "var-tmp-file": (FILE_WRITER, FILE_READER, "/var/tmp/NAME"),
    "work-dir-file": (FILE_WRITER, FILE_READER, "../../NAME"),
    "task-root-file": (FILE_WRITER, FILE_READER, "../NAME"),
    "numpy-dev-shm": (NUMPY_WRITER, NUMPY_READER, ""),
    "sysv-shm-fixed-key": (SYSV_SHM_WRITER, SYSV_SHM_READER, ""),
    "posix-shm-open": (POSIX_SHM_WRITER, POSIX_SHM_READER, ""),
    "posix-message-queue": (MQUEUE_WRITER, MQUEUE_READER, ""),
    "sysv-message-queue": (SYSV_MSG_WRITER, SYSV_MSG_READER, ""),
    "sysv-semaphore": (SYSV_SEM_WRITER, SYSV_SEM_READER, ""),
    "memfd-and-lingering-thread": (MEMFD_WRITER, DESCRIPTOR_READER, ""),
    "xattr": (XATTR_WRITER, XATTR_READER, ""),
    "abstract-unix-socket": (ABSTRACT_SOCKET_WRITER, ABSTRACT_SOCKET_READER, ""),
}


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with open_arena(tmp_path_factory.mktemp("leftovers"), BASE_LIMITS) as running:
        yield running


@pytest.mark.parametrize("case", sorted(STASHES))
def test_a_later_task_of_another_tenant_finds_no_stash(
    arena: Arena, case: str, record_verdict: Callable[[str, object], None]
) -> None:
    writer, reader, where = STASHES[case]
    token = f"STASH-{secrets.token_hex(10)}"
    args = {"token": token, "name": f"stash-{token[-8:]}", "key": str(0x5EC0000 + int(token[-5:], 16)), "where": where}
    victim = start_victim(arena, sleep=0.3)
    written = arena.run(arena.tenant("stasher"), writer, args)
    victim.check()
    found = arena.run(arena.tenant("seeker"), reader, args)
    record_verdict("writer", written.text[:300] or written.reason[:300])
    expect_contained(found, record_verdict)
    assert not leaks(found.everything, [token]), f"BREACHED: the reader saw the stash: {found.everything[:300]}"
    arena.assert_healthy()


GETPID_PYTHON = python_payload(r"""
def entrypoint(argv):
    return report("CONTAINED", "pid", pid=_os.getpid(), ppid=_os.getppid())
""")

GETPID_RAW = python_payload(r"""
def entrypoint(argv):
    pid, _ = sysc("getpid")
    tid, _ = sysc("gettid")
    return report("CONTAINED", "pid", pid=(pid, tid))
""")


@pytest.mark.parametrize("case", ["python-os-getpid", "ctypes-raw-getpid-gettid"])
def test_sequential_tasks_see_the_same_pid(arena: Arena, case: str) -> None:
    payload = GETPID_PYTHON if case == "python-os-getpid" else GETPID_RAW
    first = arena.run(arena.tenant("counter"), payload)
    for n in range(3):  # other tenants' tasks in between
        between = arena.run(arena.tenant(f"between{n}"), ECHO, {"message": "x"}, save_log=False)
        assert between.ok
    second = arena.run(arena.tenant("counter2"), payload)
    assert first.ok and second.ok, f"UNDECIDED: {first} {second}"
    pids = first.data["pid"], second.data["pid"]
    assert pids[0] == pids[1], f"BREACHED: pids {pids[0]} then {pids[1]}: the second task can count the tasks between"
    arena.assert_healthy()
