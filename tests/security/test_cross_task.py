"""Attack class 3: tasks share one sandbox.

Every task's child is forked from one zygote: same uid (0), same mount, pid and IPC namespaces,
and every task directory under one bind-mounted work directory whose only protection is its
mode (0311), which the owner, the same uid as every task, can change. While a victim task of
another tenant holds a secret input (and its working copies in its scratch directory,
/dev/shm and a private SysV segment), the attacker looks for it every way it can. The test
asserts the victim's secrets appear nowhere the attacker can see (result, log, failure reason,
its own uploaded output), that the victim's output is exactly right, and that the attack
overlapped the victim's run (else the probe decided nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import pytest
from hostile_kit import (
    BASE_LIMITS,
    CONTAINED,
    Arena,
    Outcome,
    Victim,
    attack_beside_victim,
    judge,
    leaks,
    open_arena,
    python_payload,
)

VICTIM_SLEEP = 1.6

HUNT = r"""
HUNT_ERRORS = []
TASK_DIR_MARKS = ("inputs", "outputs", "scratch", "spec.json")


def other_task_dirs(work):
    # Directories that look like another task's (inputs, outputs, scratch, spec.json), not mine.
    mine = _os.path.basename(_os.path.dirname(_os.getcwd()))
    found = []
    for entry in _os.listdir(work):
        path = _os.path.join(work, entry)
        if entry != mine and _os.path.isdir(path):
            if any(_os.path.lexists(_os.path.join(path, mark)) for mark in TASK_DIR_MARKS):
                found.append(path)
    return found


def hunt(work, collect, window=1.2):
    # Poll the other tasks' directories for ``window`` seconds; what ``collect(dir)`` finds.
    found = []
    deadline = _time.time() + window
    while not found and _time.time() < deadline:
        try:
            directories = other_task_dirs(work)
        except OSError as exc:
            HUNT_ERRORS.append((work, os_error(exc)))
            break
        for directory in directories:
            try:
                found += collect(directory)
            except OSError as exc:
                HUNT_ERRORS.append((directory, os_error(exc)))
        _time.sleep(0.05)
    return found


def verdict_on(what, found, t0):
    # BREACHED with what was found in other tasks' directories; CONTAINED when nothing was.
    if found:
        return report("BREACHED", dict(what, found=found), t0=t0)
    return report("CONTAINED", "%s, but nothing of another task: %s" % (what, HUNT_ERRORS[:5]), t0=t0)


def opened(work, chmod_target=None):
    # chmod the work directory (or ``chmod_target``) open; the errno when refused, else None.
    try:
        _os.chmod(chmod_target or work, 0o755)
    except OSError as exc:
        return os_error(exc)
    return None
"""

LIST_WORK_DIR = python_payload(
    HUNT
    + r"""
def entrypoint(argv):
    work = arguments(argv)["work"]
    t0 = _time.time()
    try:
        others = other_task_dirs(work)
    except OSError as exc:
        return report("CONTAINED", "listdir(work dir): " + os_error(exc), t0=t0)
    if not others:
        return report("CONTAINED", "work dir listed but shows no other task", t0=t0)
    return report("BREACHED", {"other tasks": others, "files": hunt(work, read_tree)}, t0=t0)
"""
)

GLOB_OTHER_INPUTS = python_payload(r"""
import glob


def entrypoint(argv):
    t0 = _time.time()
    found = []
    for pattern in ("../../*/inputs/*", "../../*/spec.json", "../../*/scratch/*", "../../*/outputs/*"):
        for path in glob.glob(pattern):
            if not path.startswith("../../" + _os.path.basename(_os.path.dirname(_os.getcwd()))):
                try:
                    found.append((path, open(path, "rb").read(200)))
                except OSError as exc:
                    found.append((path, os_error(exc)))
    if found:
        return report("BREACHED", found, t0=t0)
    return report("CONTAINED", "glob found no other task's files", t0=t0)
""")

CHMOD_WORK_DIR = python_payload(
    HUNT
    + r"""
def entrypoint(argv):
    work = arguments(argv)["work"]
    t0 = _time.time()
    refused = opened(work)
    if refused:
        return report("CONTAINED", "chmod(work dir): " + refused, t0=t0)
    return verdict_on({"chmod work dir": "accepted"}, hunt(work, read_tree), t0)
"""
)

CHMOD_CWD_GRANDPARENT = python_payload(
    HUNT
    + r"""
def entrypoint(argv):
    t0 = _time.time()
    refused = opened("../..", "../..")
    if refused:
        return report("CONTAINED", "chmod('../..'): " + refused, t0=t0)
    return verdict_on({"chmod ../..": "accepted"}, hunt("../..", read_tree), t0)
"""
)

CTYPES_FCHMODAT_GETDENTS = python_payload(r"""
import struct


def raw_read(path, size=200):
    fd, error = sysc("openat", AT_FDCWD, path.encode(), 0)
    if fd < 0:
        return error
    buffer = _ctypes.create_string_buffer(size)
    count, error = sysc("read", fd, buffer, size)
    sysc("close", fd)
    return buffer.raw[:count] if count >= 0 else error


def raw_list(path):
    fd, error = sysc("openat", AT_FDCWD, path.encode(), 0o200000)  # O_DIRECTORY
    if fd < 0:
        return None, error
    buffer = _ctypes.create_string_buffer(65536)
    names = []
    while True:
        count, error = sysc("getdents64", fd, buffer, 65536)
        if count <= 0:
            break
        offset = 0
        while offset < count:
            length = struct.unpack_from("H", buffer.raw, offset + 16)[0]
            name = buffer.raw[offset + 19 : offset + length].split(b"\0", 1)[0].decode()
            if name not in (".", ".."):
                names.append(name)
            offset += length
    sysc("close", fd)
    return names, ""


def entrypoint(argv):
    work = arguments(argv)["work"]
    t0 = _time.time()
    result, error = sysc("fchmodat", AT_FDCWD, work.encode(), 0o755, 0)
    if result < 0:
        return report("CONTAINED", "fchmodat(work dir): " + error, t0=t0)
    mine = _os.path.basename(_os.path.dirname(_os.getcwd()))
    found = []
    deadline = _time.time() + 1.2
    while not found and _time.time() < deadline:
        names, error = raw_list(work)
        for name in names or []:
            if name == mine:
                continue
            for leaf in ("inputs/secret", "spec.json", "scratch/victim-scratch.bin"):
                found.append((name + "/" + leaf, raw_read(work + "/" + name + "/" + leaf)))
        _time.sleep(0.05)
    if found:
        return report("BREACHED", {"fchmodat": "accepted", "found": found}, t0=t0)
    return report("CONTAINED", "fchmodat accepted, but no other task's files were reachable", t0=t0)
""")

READ_VICTIM_SPEC = python_payload(
    HUNT
    + r"""
def entrypoint(argv):
    work = arguments(argv)["work"]
    t0 = _time.time()
    refused = opened(work)
    if refused:
        return report("CONTAINED", "chmod(work dir): " + refused, t0=t0)

    def spec(directory):
        with open(_os.path.join(directory, "spec.json"), "rb") as handle:
            spec = _json.load(handle)
        return [(directory, {"arguments": spec.get("arguments"), "limits": spec.get("limits")})]

    return verdict_on({"read": "spec.json"}, hunt(work, spec), t0)
"""
)

REPLACE_VICTIM_OUTPUT = python_payload(
    HUNT
    + r"""
def entrypoint(argv):
    work = arguments(argv)["work"]
    t0 = _time.time()
    refused = opened(work)
    if refused:
        return report("CONTAINED", "chmod(work dir): " + refused, t0=t0)

    def replace(directory):
        done = []
        outputs = _os.path.join(directory, "outputs")
        for name in _os.listdir(outputs):
            path = _os.path.join(outputs, name)
            _os.unlink(path)
            with open(path, "wb") as handle:
                handle.write(b"PWNED-BY-MALLORY")
            done.append(path)
        return done

    return verdict_on({"replaced": "outputs"}, hunt(work, replace), t0)
"""
)

LINK_VICTIM_INPUT_AS_OUTPUT = python_payload(
    HUNT
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    work = args["work"]
    t0 = _time.time()
    with teaclave_open("loot", "wb") as out:
        out.write(b"ONLY-THIS")
    refused = opened(work)
    if refused:
        return report("CONTAINED", "chmod(work dir): " + refused, t0=t0)

    def link(directory):
        for name in _os.listdir(_os.path.join(directory, "inputs")):
            source = _os.path.join(directory, "inputs", name)
            _os.unlink("../outputs/loot")
            if args["how"] == "hard":
                _os.link(source, "../outputs/loot")
            else:
                _os.symlink(source, "../outputs/loot")
            return [source]
        return []

    return verdict_on({"linked as my output": args["how"]}, hunt(work, link), t0)
"""
)

READ_DEV_SHM = python_payload(r"""
def entrypoint(argv):
    t0 = _time.time()
    found = []
    deadline = _time.time() + 1.2
    while not found and _time.time() < deadline:
        try:
            found = read_tree("/dev/shm")
        except OSError as exc:
            return report("CONTAINED", "/dev/shm: " + os_error(exc), t0=t0)
        _time.sleep(0.05)
    if found:
        return report("BREACHED", found, t0=t0)
    return report("CONTAINED", "/dev/shm holds nothing of anyone else", t0=t0)
""")

SYSV_SHM_SCAN = python_payload(r"""
def entrypoint(argv):
    t0 = _time.time()
    libc.shmat.restype = _ctypes.c_void_p
    found, errors = [], set()
    buffer = _ctypes.create_string_buffer(512)
    deadline = _time.time() + 1.2
    while not found and _time.time() < deadline:
        for index in range(256):
            shmid, error = sysc("shmctl", index, 13, buffer)  # SHM_STAT
            if shmid < 0:
                errors.add(error)
                continue
            address = libc.shmat(shmid, None, 0o10000)  # SHM_RDONLY
            if address in (None, _ctypes.c_void_p(-1).value):
                found.append((shmid, "attach refused: " + ename(_ctypes.get_errno())))
                continue
            found.append((shmid, _ctypes.string_at(address, 64)))
            libc.shmdt(_ctypes.c_void_p(address))
        _time.sleep(0.05)
    if any(isinstance(data, bytes) for _, data in found):
        return report("BREACHED", found, t0=t0)
    return report("CONTAINED", "no foreign SysV segment readable: %s %s" % (sorted(errors), found), t0=t0)
""")

PID_SCAN = python_payload(r"""
def entrypoint(argv):
    t0 = _time.time()
    others = []
    while not others and _time.time() < t0 + 1.2:
        others = [pid for pid in visible_pids(32768) if pid not in (1, 2, _os.getpid())]
    if others:
        return report("BREACHED", "other processes visible: %s (I am %d)" % (others, _os.getpid()), t0=t0)
    return report("CONTAINED", "sees only pids 1, 2 and itself (%d)" % _os.getpid(), t0=t0)
""")

OWN_UID = python_payload(r"""
def entrypoint(argv):
    uid = _os.getuid()
    verdict = "BREACHED" if uid == 0 else "CONTAINED"
    return report(verdict, "uid %d, euid %d, gid %d" % (uid, _os.geteuid(), _os.getgid()), t0=_time.time(), uid=uid)
""")

NUMPY_READ_VICTIM_INPUT = python_payload(
    HUNT
    + r"""
import numpy as np


def entrypoint(argv):
    work = arguments(argv)["work"]
    t0 = _time.time()
    refused = opened(work)
    if refused:
        return report("CONTAINED", "chmod(work dir): " + refused, t0=t0)

    def load(directory):
        inputs = _os.path.join(directory, "inputs")
        return [(name, np.fromfile(_os.path.join(inputs, name), dtype=np.uint8).tobytes())
                for name in _os.listdir(inputs)]

    return verdict_on({"numpy read": "inputs"}, hunt(work, load), t0)
"""
)

# Opens, by data name, what another task's files would be called; every call must return -1.
WASM_OPEN_OTHER_NAMES = b"""
(module
  (import "env" "teaclave_open_input" (func $open (param i32) (result i32)))
  (import "env" "teaclave_create_output" (func $create (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "secret\\00")
  (data (i32.const 96) "../inputs/secret\\00")
  (data (i32.const 128) "../../../inputs/secret\\00")
  (data (i32.const 160) "result\\00")
  (data (i32.const 192) "../outputs/result\\00")
  (data (i32.const 224) "/etc/passwd\\00")
  (func $hit (param $fd i32) (result i32)
    (select (i32.const 1) (i32.const 0) (i32.ge_s (local.get $fd) (i32.const 0))))
  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (i32.add
      (i32.add
        (i32.add (call $hit (call $open (i32.const 64))) (call $hit (call $open (i32.const 96))))
        (i32.add (call $hit (call $open (i32.const 128))) (call $hit (call $create (i32.const 160)))))
      (i32.add (call $hit (call $create (i32.const 192))) (call $hit (call $open (i32.const 224)))))))
"""

# case -> (payload, executor, extra arguments, whether the attacker has a "loot" output)
ATTACKS: dict[str, tuple[bytes, str, dict[str, str], bool]] = {
    "list-work-dir": (LIST_WORK_DIR, "python", {}, False),
    "glob-other-tasks-files": (GLOB_OTHER_INPUTS, "python", {}, False),
    "chmod-work-dir-then-read-all": (CHMOD_WORK_DIR, "python", {}, False),
    "chmod-cwd-grandparent-then-read-all": (CHMOD_CWD_GRANDPARENT, "python", {}, False),
    "ctypes-fchmodat-getdents-read": (CTYPES_FCHMODAT_GETDENTS, "python", {}, False),
    "read-victim-spec-json": (READ_VICTIM_SPEC, "python", {}, False),
    "replace-victim-output": (REPLACE_VICTIM_OUTPUT, "python", {}, False),
    "hardlink-victim-input-as-own-output": (LINK_VICTIM_INPUT_AS_OUTPUT, "python", {"how": "hard"}, True),
    "symlink-victim-input-as-own-output": (LINK_VICTIM_INPUT_AS_OUTPUT, "python", {"how": "sym"}, True),
    "read-dev-shm": (READ_DEV_SHM, "python", {}, False),
    "sysv-shm-scan-and-attach": (SYSV_SHM_SCAN, "python", {}, False),
    "pid-scan": (PID_SCAN, "python", {}, False),
    "own-host-uid": (OWN_UID, "python", {}, False),
    "numpy-read-victim-input": (NUMPY_READ_VICTIM_INPUT, "python", {}, False),
    "wasm-open-other-tasks-names": (WASM_OPEN_OTHER_NAMES, "wasm", {}, False),
}


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with open_arena(tmp_path_factory.mktemp("cross"), BASE_LIMITS) as running:
        yield running


def _wasm_outcome(outcome: Outcome) -> Outcome:
    """A wasm probe returns how many forbidden opens succeeded: 0 is contained."""
    if outcome.ok:
        verdict = CONTAINED if outcome.text == "0" else "BREACHED"
        text = json.dumps({"verdict": verdict, "detail": f"{outcome.text} forbidden opens succeeded"})
        return Outcome(outcome.task_id, True, text=text)
    return outcome


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_attacker_beside_a_victim_finds_nothing(
    arena: Arena, case: str, record_verdict: Callable[[str, object], None]
) -> None:
    payload, executor, extra, with_loot = ATTACKS[case]
    os.chmod(arena.work_dir, 0o311)  # undo an earlier test's chmod, so each attack stands alone
    attacker = arena.tenant("mallory")
    loot = arena.output(attacker, "loot") if with_loot else None
    outcome, victim = attack_beside_victim(
        arena,
        payload,
        {"work": str(arena.work_dir), **extra},
        sleep=VICTIM_SLEEP,
        executor=executor,
        outputs={"loot": loot.data_id} if loot else None,
    )
    if executor == "wasm":
        outcome = _wasm_outcome(outcome)
    problems = _problems(outcome, victim, case)
    if loot is not None:
        uploaded = loot.plaintext(arena.scratch)
        stolen = leaks(repr(uploaded), victim.secrets)
        if stolen or uploaded not in (None, b"ONLY-THIS"):
            problems.append(f"the attacker's own output carried {uploaded!r}")
    record_verdict("verdict", "; ".join(problems) or "CONTAINED")
    assert not problems, " / ".join(problems)
    arena.assert_healthy()


def _problems(outcome: Outcome, victim: Victim, case: str) -> list[str]:
    problems = []
    verdict, evidence = judge(outcome)
    if verdict != CONTAINED:
        problems.append(f"{verdict}: {evidence[:1200]}")
    stolen = leaks(outcome.everything, victim.secrets)
    if stolen:
        problems.append(f"BREACHED: the victim's secrets {stolen} reached the attacker")
    try:
        report = victim.check()
    except AssertionError as error:
        problems.append(f"victim harmed: {error}")
        return problems
    window = outcome.data.get("t0"), outcome.data.get("t1")
    if outcome.ok and None not in window and not (window[0] <= report["end"] and window[1] >= report["start"]):
        problems.append(f"UNDECIDED: the attack probed during {window}, outside the victim's run {report}")
    if case == "own-host-uid" and outcome.data.get("uid") == report["uid"]:
        problems.append(f"BREACHED: attacker and victim run as the same uid {report['uid']}")
    return problems
