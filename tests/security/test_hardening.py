"""What held before the per-task sandbox and must keep holding.

The seccomp filter's denials (sockets, exec, new processes, tracing, namespaces, io_uring, BPF,
userfaultfd, keyrings, mount), no /proc, /sys or host /etc/shadow, a clean environment, no
descriptor but the task's own stdio, log and result pipe, and the WebAssembly host ABI's checks (pointers out
of bounds, forged handles, path-like names, huge memory, endless loops). Each is attempted as
raw system calls through ctypes where Python would hide the errno. A denial must answer EPERM,
EACCES or ENOSYS (or kill the task with SIGSYS); any other errno means the call reached the
kernel, which counts as a breach.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from hostile_kit import (
    BASE_LIMITS,
    EXAMPLES_WASM,
    Arena,
    Outcome,
    expect_contained,
    leaks,
    open_arena,
    python_payload,
)

DENIED = r"""
DENIALS = ("EPERM", "EACCES", "ENOSYS")


def verdict_of(name, result, error):
    if result == 0 and name in ("fork", "vfork", "clone", "clone3"):
        _os._exit(0)  # the child of a call that should not have worked
    if result >= 0:
        return report("BREACHED", "%s returned %d" % (name, result))
    if error in DENIALS:
        return report("CONTAINED", "%s: %s" % (name, error))
    return report("BREACHED", "%s reached the kernel: %s" % (name, error))


def attempt(name):
    parent = _os.getppid()
    buffer = _ctypes.create_string_buffer(512)
    pair = (_ctypes.c_int * 2)()
    if name == "socket-inet":
        return sysc("socket", 2, 1, 0)
    if name == "socket-unix":
        return sysc("socket", 1, 1, 0)
    if name == "socket-netlink":
        return sysc("socket", 16, 3, 0)
    if name == "socketpair":
        return sysc("socketpair", 1, 1, 0, pair)
    if name == "connect":
        _ctypes.memmove(buffer, (1).to_bytes(2, "little") + b"/nonexistent\0", 15)
        return sysc("connect", 0, buffer, 110)
    if name == "execve":
        return sysc("execve", b"/nonexistent", None, None)
    if name == "execveat":
        return sysc("execveat", AT_FDCWD, b"/nonexistent", None, None, 0)
    if name == "fork":
        return sysc("fork")
    if name == "vfork":
        return sysc("vfork")
    if name == "clone":
        return sysc("clone", 17, 0, 0, 0, 0)  # SIGCHLD, no CLONE_THREAD
    if name == "clone3":
        _ctypes.memmove(buffer, bytes(32) + (17).to_bytes(8, "little"), 40)  # exit_signal SIGCHLD
        return sysc("clone3", buffer, 88)
    if name == "ptrace-traceme":
        return sysc("ptrace", 0, 0, 0, 0)
    if name == "ptrace-attach-parent":
        return sysc("ptrace", 16, parent, 0, 0)
    if name == "process-vm-readv-parent":
        return sysc("process_vm_readv", parent, buffer, 1, buffer, 1, 0)
    if name == "unshare":
        return sysc("unshare", 0x10000000 | 0x00020000)  # CLONE_NEWUSER | CLONE_NEWNS
    if name == "setns":
        return sysc("setns", 0, 0)
    if name == "io-uring-setup":
        return sysc("io_uring_setup", 1, buffer)
    if name == "bpf":
        return sysc("bpf", 0, buffer, 72)
    if name == "userfaultfd":
        return sysc("userfaultfd", 0)
    if name == "keyctl":
        return sysc("keyctl", 0, -3, 1)  # KEYCTL_GET_KEYRING_ID, session keyring, create
    if name == "add-key":
        return sysc("add_key", b"user", b"stash", b"x", 1, -2)
    if name == "mount":
        return sysc("mount", b"none", b"/tmp", b"tmpfs", 0, None)
    if name == "perf-event-open":
        return sysc("perf_event_open", buffer, 0, -1, -1, 0)
    if name == "pidfd-open-parent":
        return sysc("pidfd_open", parent, 0)
    if name == "kcmp-parent":
        return sysc("kcmp", _os.getpid(), parent, 0, 0, 0)
    if name == "control-getppid":
        return sysc("getppid")
    if name == "control-chmod-missing":
        return sysc("chmod", b"/nonexistent", 0o755)
    raise ValueError(name)


def entrypoint(argv):
    name = arguments(argv)["call"]
    result, error = attempt(name)
    return verdict_of(name, result, error)
"""

SYSCALLS = python_payload(DENIED)
DENIED_CALLS = (
    "socket-inet",
    "socket-unix",
    "socket-netlink",
    "socketpair",
    "connect",
    "execve",
    "execveat",
    "fork",
    "vfork",
    "clone",
    "clone3",
    "ptrace-traceme",
    "ptrace-attach-parent",
    "process-vm-readv-parent",
    "unshare",
    "setns",
    "io-uring-setup",
    "bpf",
    "userfaultfd",
    "keyctl",
    "add-key",
    "mount",
    "perf-event-open",
    "pidfd-open-parent",
    "kcmp-parent",
)

PYTHON_LEVEL = {
    "python-socket": "import socket\n    socket.socket()",
    "python-subprocess": "import subprocess\n    subprocess.run(['/bin/true'])",
    "python-os-fork": "if _os.fork() == 0:\n        _os._exit(0)",
    "python-os-execv": "_os.execv('/bin/true', ['true'])",
    "python-multiprocessing": "import multiprocessing\n    multiprocessing.Process(target=print).start()",
}


def _python_level(body: str) -> bytes:
    return python_payload(
        "def entrypoint(argv):\n    try:\n        "
        + body.replace("\n", "\n    ")
        + "\n    except OSError as exc:\n"
        + "        if os_error(exc) in ('EPERM', 'EACCES', 'ENOSYS'):\n"
        + "            return report('CONTAINED', os_error(exc))\n"
        + "        return report('BREACHED', 'reached the kernel: ' + os_error(exc))\n"
        + "    return report('BREACHED', 'it worked')\n"
    )


VISIBILITY = python_payload(r"""
def entrypoint(argv):
    what = arguments(argv)["what"]
    if what == "proc":
        seen = [p for p in ("/proc/self", "/proc/1", "/proc/self/environ") if _os.path.exists(p)]
    elif what == "sys":
        seen = _os.listdir("/sys") if _os.path.isdir("/sys") else []
    elif what == "etc-shadow":
        seen = []
        for path in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers"):
            try:
                with open(path, "rb") as handle:
                    seen.append((path, handle.read(80)))
            except OSError:
                pass
    elif what == "dev-nodes":
        import stat

        harmless = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "console"}
        seen = []
        for name in _os.listdir("/dev"):
            mode = _os.lstat("/dev/" + name).st_mode
            if stat.S_ISBLK(mode) or (stat.S_ISCHR(mode) and name not in harmless):
                seen.append(name)
    else:
        raise ValueError(what)
    if seen:
        return report("BREACHED", seen)
    return report("CONTAINED", "nothing of the host's %s" % what)
""")

ENVIRONMENT = python_payload(r"""
def entrypoint(argv):
    suspicious = {k: v for k, v in _os.environ.items()
                  if k.startswith("CLOISTER") or any(w in k.upper() for w in ("PASSWORD", "TOKEN", "SECRET", "KEY"))}
    if suspicious:
        return report("BREACHED", suspicious, environ=dict(_os.environ))
    return report("CONTAINED", sorted(_os.environ), environ=dict(_os.environ))
""")

DESCRIPTORS = python_payload(r"""
import fcntl
import stat


def entrypoint(argv):
    log = {(_os.fstat(fd).st_dev, _os.fstat(fd).st_ino) for fd in (1, 2)}
    extra, result_pipes = [], []
    for fd in range(3, 1025):
        try:
            info = _os.fstat(fd)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in log:
            continue  # another copy of the log
        kind = stat.S_IFMT(info.st_mode)
        write_only = fcntl.fcntl(fd, fcntl.F_GETFL) & _os.O_ACCMODE == _os.O_WRONLY
        if kind == stat.S_IFIFO and write_only and not result_pipes:
            result_pipes.append(fd)  # the write end of the task's own result pipe: nothing to read
            continue
        names = {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFSOCK: "socket", stat.S_IFIFO: "pipe",
                 stat.S_IFCHR: "character device"}
        extra.append((fd, names.get(kind, oct(kind)), info.st_size))
    if extra:
        return report("BREACHED", "descriptors beyond stdio and the log: %s" % extra)
    return report("CONTAINED", "only stdio, the log and the task's own result pipe")
""")

# -- WebAssembly ---------------------------------------------------------------------------------

WASM_FORGED_HANDLES = b"""
(module
  (import "env" "teaclave_open_input" (func $open (param i32) (result i32)))
  (import "env" "teaclave_create_output" (func $create (param i32) (result i32)))
  (import "env" "teaclave_read_file" (func $read (param i32 i32 i32) (result i32)))
  (import "env" "teaclave_write_file" (func $write (param i32 i32 i32) (result i32)))
  (import "env" "teaclave_close_file" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "data\\00")
  (func $ok (param $r i32) (result i32) (select (i32.const 1) (i32.const 0) (i32.ge_s (local.get $r) (i32.const 0))))
  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (local $in i32) (local $hits i32)
    (local.set $in (call $open (i32.const 16)))
    (if (i32.lt_s (local.get $in) (i32.const 0)) (then (return (i32.const -100))))
    (local.set $hits (i32.add (local.get $hits) (call $ok (call $read (i32.const 0) (i32.const 256) (i32.const 8)))))
    (local.set $hits (i32.add (local.get $hits) (call $ok (call $read (i32.const 2) (i32.const 256) (i32.const 8)))))
    (local.set $hits (i32.add (local.get $hits) (call $ok (call $read (i32.const 3) (i32.const 256) (i32.const 8)))))
    (local.set $hits (i32.add (local.get $hits) (call $ok (call $read (i32.const -1) (i32.const 256) (i32.const 8)))))
    (local.set $hits (i32.add (local.get $hits)
      (call $ok (call $write (i32.or (local.get $in) (i32.const 0x40000000)) (i32.const 16) (i32.const 4)))))
    (local.set $hits (i32.add (local.get $hits) (call $ok (call $write (local.get $in) (i32.const 16) (i32.const 4)))))
    (local.set $hits (i32.add (local.get $hits)
      (call $ok (call $write (i32.const 0x40000002) (i32.const 16) (i32.const 4)))))
    (local.set $hits (i32.add (local.get $hits) (call $ok (call $close (i32.const 77)))))
    (local.set $hits (i32.add (local.get $hits) (call $ok (call $close (i32.const 0x40000001)))))
    (local.get $hits)))
"""
"""Reads, writes and closes handles it never got, and writes to a read handle: returns how many worked."""

WASM_PATH_NAMES = b"""
(module
  (import "env" "teaclave_open_input" (func $open (param i32) (result i32)))
  (import "env" "teaclave_create_output" (func $create (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "../inputs/data\\00")
  (data (i32.const 64) "../../spec.json\\00")
  (data (i32.const 96) "/etc/passwd\\00")
  (data (i32.const 128) "./data\\00")
  (data (i32.const 160) "data/../data\\00")
  (data (i32.const 192) "../outputs/x\\00")
  (data (i32.const 224) "../../../../../../tmp/x\\00")
  (func $ok (param $r i32) (result i32) (select (i32.const 1) (i32.const 0) (i32.ge_s (local.get $r) (i32.const 0))))
  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (i32.add
      (i32.add
        (i32.add (call $ok (call $open (i32.const 32))) (call $ok (call $open (i32.const 64))))
        (i32.add (call $ok (call $open (i32.const 96))) (call $ok (call $open (i32.const 128)))))
      (i32.add
        (i32.add (call $ok (call $open (i32.const 160))) (call $ok (call $create (i32.const 192))))
        (call $ok (call $create (i32.const 224)))))))
"""
"""Opens path-like names instead of its data names: returns how many worked."""

WASM_HUGE_DECLARED_MEMORY = b"""
(module
  (memory (export "memory") 60000)
  (func (export "entrypoint") (param i32 i32) (result i32) (i32.const 0)))
"""

WASM_DEEP_RECURSION = b"""
(module
  (memory (export "memory") 1)
  (func $down (param $n i32) (result i32) (i32.add (call $down (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "entrypoint") (param i32 i32) (result i32) (call $down (i32.const 0))))
"""

WASM_START_LOOP = b"""
(module
  (memory (export "memory") 1)
  (func $spin (loop $forever (br $forever)))
  (start $spin)
  (func (export "entrypoint") (param i32 i32) (result i32) (i32.const 0)))
"""

WASM_WASI_IMPORT = b"""
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "entrypoint") (param i32 i32) (result i32) (i32.const 0)))
"""

WASM_CASES: dict[str, tuple[bytes, tuple[str, ...], bool]] = {
    # case -> (module, failure reasons that mean contained, whether it gets an input "data")
    "wasm-out-of-bounds-pointers": (b"", (), True),
    "wasm-forged-handles": (WASM_FORGED_HANDLES, (), True),
    "wasm-path-like-names": (WASM_PATH_NAMES, (), True),
    "wasm-huge-declared-memory": (WASM_HUGE_DECLARED_MEMORY, ("memory limit",), False),
    "wasm-deep-recursion": (WASM_DEEP_RECURSION, ("wasm trap",), False),
    "wasm-endless-start-function": (WASM_START_LOOP, ("ran out of fuel",), False),
    "wasm-wasi-import": (WASM_WASI_IMPORT, ("invalid WebAssembly module",), False),
}


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with open_arena(tmp_path_factory.mktemp("hardening"), BASE_LIMITS) as running:
        yield running


@pytest.mark.parametrize("call", DENIED_CALLS)
def test_system_call_is_denied(arena: Arena, call: str, record_verdict: Callable[[str, object], None]) -> None:
    outcome = arena.run(arena.tenant("prober"), SYSCALLS, {"call": call})
    expect_contained(outcome, record_verdict, contained_reasons=("SIGSYS",))
    arena.assert_healthy()


@pytest.mark.parametrize("call", ["control-getppid", "control-chmod-missing"])
def test_control_probe_reports_an_allowed_call_as_breached(arena: Arena, call: str) -> None:
    """The probes can fail: a call the filter allows is reported as reaching the kernel."""
    outcome = arena.run(arena.tenant("prober"), SYSCALLS, {"call": call})
    assert outcome.data.get("verdict") == "BREACHED", outcome


@pytest.mark.parametrize("case", sorted(PYTHON_LEVEL))
def test_python_level_escape_is_denied(arena: Arena, case: str, record_verdict: Callable[[str, object], None]) -> None:
    outcome = arena.run(arena.tenant("prober"), _python_level(PYTHON_LEVEL[case]))
    expect_contained(outcome, record_verdict, contained_reasons=("SIGSYS",))
    arena.assert_healthy()


@pytest.mark.parametrize("what", ["proc", "sys", "etc-shadow", "dev-nodes"])
def test_host_filesystem_is_invisible(arena: Arena, what: str, record_verdict: Callable[[str, object], None]) -> None:
    expect_contained(arena.run(arena.tenant("prober"), VISIBILITY, {"what": what}), record_verdict)
    arena.assert_healthy()


def test_environment_is_clean(arena: Arena, record_verdict: Callable[[str, object], None]) -> None:
    outcome = arena.run(arena.tenant("prober"), ENVIRONMENT)
    expect_contained(outcome, record_verdict)
    assert not leaks(outcome.everything, [arena.platform.admin_password]), "the admin password reached the task"
    assert not any(key.startswith("CLOISTER") for key in outcome.data.get("environ", {}))
    arena.assert_healthy()


def test_only_the_tasks_own_descriptors(arena: Arena, record_verdict: Callable[[str, object], None]) -> None:
    expect_contained(arena.run(arena.tenant("prober"), DESCRIPTORS), record_verdict)
    arena.assert_healthy()


def _wasm_verdict(outcome: Outcome, case: str) -> Outcome:
    """Probes return how many forbidden calls worked (0 is contained); bad_pointer.wat returns -5."""
    if not outcome.ok:
        return outcome
    expected = "-5" if case == "wasm-out-of-bounds-pointers" else "0"
    verdict = "CONTAINED" if outcome.text == expected else "BREACHED"
    return Outcome(outcome.task_id, True, text=json.dumps({"verdict": verdict, "detail": f"returned {outcome.text}"}))


@pytest.mark.parametrize("case", sorted(WASM_CASES))
def test_wasm_host_abi_holds(arena: Arena, case: str, record_verdict: Callable[[str, object], None]) -> None:
    module, reasons, with_input = WASM_CASES[case]
    if case == "wasm-out-of-bounds-pointers":
        module = (EXAMPLES_WASM / "bad_pointer.wat").read_bytes()
    prober = arena.tenant("prober")
    inputs = {"data": arena.raw_input(prober, b"some data")} if with_input else None
    args = {"input": "data"} if case == "wasm-out-of-bounds-pointers" else {}
    outcome = arena.run(prober, module, args, executor="wasm", inputs=inputs)
    expect_contained(_wasm_verdict(outcome, case), record_verdict, contained_reasons=reasons)
    arena.assert_healthy()
