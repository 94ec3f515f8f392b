"""Attack class 6: limits with holes.

An address-space limit alone misses memory held in memfds, /dev/shm and scratch files (tmpfs)
and detached SysV segments, bounds neither threads nor scratch space, and setpriority, sched_*,
ioprio_set and prlimit would reach any pid of the same uid. These attacks try each against the
limits this module's platform sets (``CLOISTER_SANDBOX__PIDS``, ``__SCRATCH_BYTES``,
``__SHM_BYTES``, ``__MEMORY_BYTES``); ``test_platform_accepts_the_new_limits`` checks that the
platform takes those settings at all.

A task over a limit must fail with a reason naming it, or the function itself must observe the
refusal (MemoryError, ENOSPC, "can't start new thread") within the bound; nothing else passes.
Each attack runs beside a short victim task of another tenant, which must finish exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile_kit import (
    BASE_LIMITS,
    Arena,
    Outcome,
    expect_contained,
    open_arena,
    python_payload,
    start_victim,
)

from cloister.config import load_settings
from cloister.errors import ConfigurationError

MIB = 1024**2
MEMORY = 256 * MIB
PIDS = 32
SCRATCH = 16 * MIB
SHM = 16 * MIB
NEW_LIMITS = {
    "CLOISTER_SANDBOX__PIDS": str(PIDS),
    "CLOISTER_SANDBOX__SCRATCH_BYTES": str(SCRATCH),
    "CLOISTER_SANDBOX__SHM_BYTES": str(SHM),
}
KNOWN_LIMITS = {
    **BASE_LIMITS,
    "CLOISTER_SANDBOX__CPU_SECONDS": "2",
    "CLOISTER_SANDBOX__WALL_SECONDS": "6",
    "CLOISTER_SANDBOX__MEMORY_BYTES": str(MEMORY),
    "CLOISTER_SANDBOX__OUTPUT_BYTES": str(8 * MIB),
    "CLOISTER_SANDBOX__OPEN_FILES": "256",
    "CLOISTER_SANDBOX__WASM_FUEL": "500000000",
}
BOUNDS = {"memory": MEMORY, "pids": PIDS, "scratch": SCRATCH, "shm": SHM}
TARGET = MEMORY + 64 * MIB
"""How much a memory attack tries to hold: more than its limit, bounded so today's breach stays cheap."""

_refusal: list[str] = []


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    env = {**KNOWN_LIMITS, **NEW_LIMITS}
    try:
        load_settings(None, env, state_dir=Path("/nonexistent"))
    except ConfigurationError as error:
        _refusal.append(error.message)
        env = KNOWN_LIMITS
    with open_arena(tmp_path_factory.mktemp("limits"), env) as running:
        yield running


def test_platform_accepts_the_new_limits(arena: Arena) -> None:
    assert not _refusal, f"the platform refuses the redesign's settings {sorted(NEW_LIMITS)}: {_refusal[0]}"


FILL = r'''
def fill(add, bound, target, chunk, cleanup=lambda: None):
    """Hold up to ``target`` bytes with ``add(chunk)``; contained only if refused within ``bound``."""
    total, refusal = 0, None
    try:
        while total < target:
            add(chunk)
            total += chunk
    except MemoryError:
        refusal = "MemoryError"
    except OSError as exc:
        refusal = os_error(exc)
    finally:
        held = total
        cleanup()
    if refusal is not None and held <= bound:
        return report("CONTAINED", "%s after %d bytes (bound %d)" % (refusal, held, bound))
    return report("BREACHED", "held %d bytes, bound %d (refusal: %s)" % (held, bound, refusal))
'''

THREAD_BOMB = python_payload(r"""
import threading


def entrypoint(argv):
    bound = int(arguments(argv)["pids"])
    threading.stack_size(64 * 1024)
    stop = threading.Event()
    started, refusal = 0, None
    try:
        while started < 4 * bound:
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
    except RuntimeError as exc:
        refusal = str(exc)
    except MemoryError:
        refusal = "MemoryError"
    stop.set()
    if refusal is not None and started + 1 <= bound:
        return report("CONTAINED", "%s after %d threads (bound %d)" % (refusal, started, bound))
    return report("BREACHED", "%d threads beside the main one, bound %d (refusal: %s)" % (started, bound, refusal))
""")

RAW_CLONE_PROCESS = python_payload(r"""
def entrypoint(argv):
    result, error = sysc("clone", 17, 0, 0, 0, 0)  # SIGCHLD: a new process, not a thread
    if result == 0:
        _os._exit(0)
    if result > 0:
        return report("BREACHED", "raw clone made process %d" % result)
    return report("CONTAINED", "clone: " + error)
""")

MEMFD_WRITE = python_payload(
    FILL
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    fds = []

    def add(chunk):
        fd = _os.memfd_create("hoard", 0)
        fds.append(fd)
        block = b"\x5a" * (1 << 20)
        for _ in range(chunk >> 20):
            _os.write(fd, block)

    def cleanup():
        for fd in fds:
            _os.close(fd)

    return fill(add, int(args["bound"]), int(args["target"]), 4 << 20, cleanup)
"""
)

MEMFD_TRUNCATE_PWRITE = python_payload(
    FILL
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    fds = []

    def add(chunk):
        fd, error = sysc("memfd_create", b"hoard", 0)
        if fd < 0:
            raise OSError(getattr(_errno, error, 1), error)
        fds.append(fd)
        _os.ftruncate(fd, chunk)
        for offset in range(0, chunk, 1 << 20):
            _os.pwrite(fd, b"\xa5" * (1 << 20), offset)

    def cleanup():
        for fd in fds:
            _os.close(fd)

    return fill(add, int(args["bound"]), int(args["target"]), 4 << 20, cleanup)
"""
)

FILES_IN = python_payload(
    FILL
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    directory = args["directory"]
    paths = []

    def add(chunk):
        path = _os.path.join(directory, "hoard-%d-%d" % (_os.getpid(), len(paths)))
        paths.append(path)
        with open(path, "wb") as handle:
            for _ in range(chunk >> 20):
                handle.write(b"\x5a" * (1 << 20))

    def cleanup():
        for path in paths:
            try:
                _os.unlink(path)
            except OSError:
                pass

    return fill(add, int(args["bound"]), int(args["target"]), 4 << 20, cleanup)
"""
)

NUMPY_SCRATCH_FILES = python_payload(
    FILL
    + r"""
import numpy as np


def entrypoint(argv):
    args = arguments(argv)
    paths = []

    def add(chunk):
        paths.append("blob-%d.npy" % len(paths))
        np.full(chunk, 7, dtype=np.uint8).tofile(paths[-1])

    return fill(add, int(args["bound"]), int(args["target"]), 4 << 20)
"""
)

SYSV_SEGMENTS = python_payload(
    FILL
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    libc.shmat.restype = _ctypes.c_void_p
    segments = []

    def add(chunk):
        segment, error = sysc("shmget", 0, chunk, 0o1600)  # IPC_PRIVATE
        if segment < 0:
            raise OSError(getattr(_errno, error, 1), error)
        segments.append(segment)
        address = libc.shmat(int(segment), None, 0)
        if address in (None, _ctypes.c_void_p(-1).value):
            raise OSError(_ctypes.get_errno(), "shmat")
        _ctypes.memset(address, 0x5A, chunk)
        libc.shmdt(_ctypes.c_void_p(address))  # detached: no longer in the address space

    def cleanup():
        for segment in segments:
            sysc("shmctl", segment, 0, 0)  # IPC_RMID

    return fill(add, int(args["bound"]), int(args["target"]), 16 << 20, cleanup)
"""
)

NUMPY_ARRAYS = python_payload(
    FILL
    + r"""
import numpy as np


def entrypoint(argv):
    args = arguments(argv)
    arrays = []

    def add(chunk):
        arrays.append(np.ones(chunk, dtype=np.uint8))

    return fill(add, int(args["bound"]), int(args["target"]), 16 << 20, arrays.clear)
"""
)

NUMPY_ONE_HUGE_ARRAY = python_payload(r"""
import numpy as np


def entrypoint(argv):
    args = arguments(argv)
    try:
        huge = np.ones(int(args["target"]), dtype=np.uint8)
    except MemoryError:
        return report("CONTAINED", "MemoryError")
    return report("BREACHED", "allocated and touched %d bytes" % huge.nbytes)
""")

PYTHON_BYTES = python_payload(
    FILL
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    held = []

    def add(chunk):
        held.append(bytearray(b"\x01") * chunk)

    return fill(add, int(args["bound"]), int(args["target"]), 16 << 20, held.clear)
"""
)

OPEN_FILES = python_payload(r"""
def entrypoint(argv):
    bound = int(arguments(argv)["bound"])
    opened = []
    try:
        while len(opened) < 4 * bound:
            opened.append(_os.open("/dev/null", _os.O_RDONLY))
    except OSError as exc:
        if len(opened) <= bound:
            return report("CONTAINED", "%s after %d" % (os_error(exc), len(opened)))
    return report("BREACHED", "opened %d descriptors, bound %d" % (len(opened), bound))
""")

FORK_BOMB = python_payload(r"""
def entrypoint(argv):
    children = 0
    try:
        while children < 64:
            if _os.fork() == 0:
                _os._exit(0)
            children += 1
    except OSError as exc:
        if children == 0:
            return report("CONTAINED", "fork: " + os_error(exc))
    return report("BREACHED", "forked %d children" % children)
""")

PRIORITY = r'''
import os
import resource
import struct


def other_targets(kind):
    me = _os.getpid()
    aims = {"parent": [_os.getppid()], "pid-1": [1], "range": list(range(1, 65))}[kind]
    return [pid for pid in aims if pid not in (0, me)]


def try_on(kind, call):
    """Run ``call(pid)`` (which sets what is already set) on each target: any success is a breach."""
    accepted, refused = [], []
    for pid in other_targets(kind):
        try:
            call(pid)
            accepted.append(pid)
        except OSError as exc:
            refused.append((pid, os_error(exc)))
    if accepted:
        return report("BREACHED", "accepted on pids %s (refused: %s)" % (accepted, refused[:4]))
    return report("CONTAINED", "refused: %s" % sorted({error for _, error in refused}))


def raw(name, *args):
    result, error = sysc(name, *args)
    if result < 0:
        raise OSError(getattr(_errno, error, 1), name + ": " + error)
    return result


def set_priority(pid):
    os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid))


def set_affinity(pid):
    os.sched_setaffinity(pid, os.sched_getaffinity(pid))


def set_scheduler(pid):
    os.sched_setscheduler(pid, os.sched_getscheduler(pid), os.sched_getparam(pid))


def set_attr(pid):
    attr = _ctypes.create_string_buffer(56)
    raw("sched_getattr", pid, attr, 56, 0)
    raw("sched_setattr", pid, attr, 0)


def set_ioprio(pid):
    current = raw("ioprio_get", 1, pid)  # IOPRIO_WHO_PROCESS
    raw("ioprio_set", 1, pid, current)


def set_prlimit(pid):
    resource.prlimit(pid, resource.RLIMIT_NOFILE, resource.prlimit(pid, resource.RLIMIT_NOFILE))


CALLS = {"setpriority": set_priority, "sched_setaffinity": set_affinity, "sched_setscheduler": set_scheduler,
         "sched_setattr": set_attr, "ioprio_set": set_ioprio, "prlimit": set_prlimit}
'''

PRIORITY_ATTACK = python_payload(
    PRIORITY
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    return try_on(args["kind"], CALLS[args["call"]])
"""
)

CPU_LOOP = python_payload("def entrypoint(argv):\n    while True:\n        pass\n")
WALL_SLEEP = python_payload("def entrypoint(argv):\n    _time.sleep(3600)\n")
HUGE_OUTPUT = python_payload(
    "def entrypoint(argv):\n    with teaclave_open('out', 'wb') as out:\n"
    "        while True:\n            out.write(b'x' * (1 << 20))\n"
)
WASM_GROW = b"""
(module
  (memory (export "memory") 1)
  (func (export "entrypoint") (param i32 i32) (result i32)
    (drop (memory.grow (i32.const 30000)))
    (loop $again (br_if $again (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (memory.size)))
"""
"""Grows by 2 GiB at once, then a page at a time until refused; returns the pages it holds."""
WASM_LOOP = b"""
(module
  (memory (export "memory") 1)
  (func (export "entrypoint") (param i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
"""


# case -> (payload, executor, arguments, failure reasons that mean the limit held)
CASES: dict[str, tuple[bytes, str, dict[str, str], tuple[str, ...]]] = {
    "thread-bomb-threading": (THREAD_BOMB, "python", {"pids": str(PIDS)}, ("thread limit",)),
    "raw-clone-new-process": (RAW_CLONE_PROCESS, "python", {}, ("thread limit",)),
    "fork-bomb": (FORK_BOMB, "python", {}, ("thread limit",)),
    "memfd-write": (MEMFD_WRITE, "python", {"bound": str(MEMORY)}, ("memory limit",)),
    "memfd-ftruncate-pwrite": (MEMFD_TRUNCATE_PWRITE, "python", {"bound": str(MEMORY)}, ("memory limit",)),
    "dev-shm-files": (FILES_IN, "python", {"bound": str(SHM), "directory": "/dev/shm"}, ("memory limit", "shm")),
    "scratch-files-memory": (FILES_IN, "python", {"bound": str(SCRATCH), "directory": "."}, ("scratch",)),
    "scratch-fill-until-enospc": (
        FILES_IN,
        "python",
        {"bound": str(SCRATCH), "directory": ".", "target": str(4 * SCRATCH)},
        ("scratch",),
    ),
    "numpy-scratch-files": (NUMPY_SCRATCH_FILES, "python", {"bound": str(SCRATCH)}, ("scratch",)),
    "sysv-shm-detached-segments": (SYSV_SEGMENTS, "python", {"bound": str(MEMORY)}, ("memory limit",)),
    "numpy-arrays": (NUMPY_ARRAYS, "python", {"bound": str(MEMORY)}, ("memory limit",)),
    "numpy-one-huge-array": (NUMPY_ONE_HUGE_ARRAY, "python", {}, ("memory limit",)),
    "python-bytearrays": (PYTHON_BYTES, "python", {"bound": str(MEMORY)}, ("memory limit",)),
    "open-files": (OPEN_FILES, "python", {"bound": KNOWN_LIMITS["CLOISTER_SANDBOX__OPEN_FILES"]}, ()),
    "cpu-endless-loop": (CPU_LOOP, "python", {}, ("CPU time limit",)),
    "wall-sleep-forever": (WALL_SLEEP, "python", {}, ("wall time limit",)),
    "output-without-end": (HUGE_OUTPUT, "python", {}, ("output size limit",)),
    "wasm-memory-grow-huge": (WASM_GROW, "wasm", {}, ("memory limit",)),
    "wasm-endless-loop": (WASM_LOOP, "wasm", {}, ("ran out of fuel",)),
}
for _call in ("setpriority", "sched_setaffinity", "sched_setscheduler", "sched_setattr", "ioprio_set", "prlimit"):
    for _kind in ("parent", "pid-1", "range"):
        if _kind == "parent" or _call in ("setpriority", "sched_setaffinity"):
            CASES[f"{_call}-{_kind}"] = (PRIORITY_ATTACK, "python", {"call": _call, "kind": _kind}, ())


@pytest.mark.parametrize("case", sorted(CASES))
def test_limit_holds_and_the_victim_finishes(
    arena: Arena, case: str, record_verdict: Callable[[str, object], None]
) -> None:
    payload, executor, args, reasons = CASES[case]
    args = {"target": str(TARGET), **args}
    attacker = arena.tenant("hog")
    outputs = {"out": arena.output(attacker, "out").data_id} if payload is HUGE_OUTPUT else None
    victim = start_victim(arena, sleep=0.5)
    outcome: Outcome = arena.run(attacker, payload, args, executor=executor, outputs=outputs)
    if executor == "wasm" and outcome.ok:
        held = int(outcome.text) * 65536 if payload is WASM_GROW else None
        verdict = "CONTAINED" if held is not None and held <= MEMORY else "BREACHED"
        text = json.dumps({"verdict": verdict, "detail": f"returned {outcome.text} ({held} bytes held)"})
        outcome = Outcome(outcome.task_id, True, text=text)
    problems = []
    try:
        expect_contained(outcome, record_verdict, contained_reasons=reasons)
    except AssertionError as error:
        problems.append(str(error).splitlines()[0])
    try:
        victim.check()
    except AssertionError as error:
        problems.append(f"victim harmed: {str(error).splitlines()[0]}")
    assert not problems, " / ".join(problems)
    arena.assert_healthy()
