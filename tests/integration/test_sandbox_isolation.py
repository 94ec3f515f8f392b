"""The sandbox itself, driven directly: one task, one sandbox, and nothing left for the next.

Real bubblewrap, real namespaces, real cgroups (where the host gives them): each probe is a Python
function run by :class:`Sandbox` exactly as the execution service runs it, which reports what it
could and could not do.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister.config import SandboxLimits
from cloister.executors.base import FunctionError, TaskFiles
from cloister.executors.sandbox.host import Sandbox, scratch_rebinds
from cloister.model.executors import ExecutorKind
from cloister.model.tasks import StagedTask

LIMITS = SandboxLimits(
    cpu_seconds=5,
    wall_seconds=20,
    memory_bytes=512 * 1024**2,
    pids=16,
    scratch_bytes=8 * 1024**2,
    shm_bytes=4 * 1024**2,
)
ROOT = os.geteuid() == 0


class Runner:
    """One sandbox on its own event loop, for the tests of this module."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.loop = asyncio.new_event_loop()
        self.sandbox = Sandbox(limits)

    def run(self, source: str, files: TaskFiles | None = None) -> str:
        return self.loop.run_until_complete(self.run_async(source, files))

    async def run_async(self, source: str, files: TaskFiles | None = None) -> str:
        """``OK:<return value>`` or ``FAILED:<reason>``."""
        task = StagedTask(uuid.uuid4(), uuid.uuid4(), "u", "mesapy", "python", "f", {}, source.encode(), {}, {})
        try:
            outputs = await self.sandbox.run(ExecutorKind.PYTHON, task, files or TaskFiles())
        except FunctionError as exc:
            return f"FAILED:{exc.reason}"
        return "OK:" + outputs.return_value.decode()

    def close(self) -> None:
        self.loop.run_until_complete(self.sandbox.close())
        self.loop.close()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Runner]:
    runner = Runner(LIMITS)
    yield runner
    runner.close()


def probe(body: str) -> str:
    """A function whose body reports a verdict with ``return``."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"import os, ctypes, errno\nlibc = ctypes.CDLL(None, use_errno=True)\ndef entrypoint(argv):\n{lines}\n"


def test_each_task_is_pid_1_as_its_own_uid_in_an_empty_scratch(sandbox: Runner) -> None:
    body = """
uid = os.getuid()
return f"{uid} {os.getgid()} {os.getpid()} {os.getcwd()} {sorted(os.listdir('.'))} {sorted(os.listdir('/dev/shm'))}"
"""

    async def two_at_once() -> list[str]:
        return await asyncio.gather(sandbox.run_async(probe(body)), sandbox.run_async(probe(body)))

    first, second = sandbox.loop.run_until_complete(two_at_once())
    for result in (first, second):
        assert result.startswith("OK:"), result
        uid, gid, pid, cwd, scratch, shm = result[3:].split(" ", 5)
        # Empty, but for the mount points of a runtime installed under /tmp (a clone there).
        runtime = sorted({Path(path).relative_to("/tmp").parts[0] for _, path in scratch_rebinds()})
        assert (pid, cwd, scratch, shm) == ("1", "/tmp", str(runtime), "[]")
        if ROOT:
            assert LIMITS.first_task_uid <= int(uid) < LIMITS.first_task_uid + LIMITS.task_uids
            assert gid == uid
    if ROOT:
        assert first.split()[0] != second.split()[0]  # concurrent tasks never share a uid


def test_nothing_a_task_leaves_behind_reaches_the_next(sandbox: Runner) -> None:
    stash = """
open('/tmp/stash', 'w').write('secret')
open('/dev/shm/stash', 'w').write('secret')
for path in ('/stash', '/dev/stash', '/var/tmp/stash', '/usr/stash'):
    try:
        open(path, 'w').write('secret')
        return 'BREACHED:' + path
    except OSError as exc:
        pass
return 'stashed'
"""
    assert sandbox.run(probe(stash)) == "OK:stashed"
    look = """
found = [p for p in ('/tmp/stash', '/dev/shm/stash') if os.path.exists(p)]
return 'found ' + ','.join(found) if found else 'nothing'
"""
    assert sandbox.run(probe(look)) == "OK:nothing"


def test_the_platform_is_not_inside(sandbox: Runner, tmp_path: Path) -> None:
    body = f"""
import json, stat
seen = [p for p in ('/proc', '/sys', '/etc/shadow', '/etc/passwd', {str(tmp_path)!r}, '/root/.ssh', '/var/lib')
        if os.path.exists(p)]
fds = {{}}
for fd in range(3, 1024):
    try:
        fds[fd] = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        pass
return json.dumps([seen, fds, sorted(os.environ)])
"""
    result = sandbox.run(probe(body))
    assert result.startswith("OK:"), result
    seen, fds, environment = json.loads(result[3:])
    assert seen == []
    # Besides stdio (the task's log) only the pipe for its own result is open: no file of the service.
    assert list(fds.values()) == [True], fds
    assert not [name for name in environment if name.startswith("CLOISTER") or "PASSWORD" in name]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("F_SETOWN", "import fcntl\nr, w = os.pipe()\nfcntl.fcntl(r, fcntl.F_SETOWN, 1)"),
        ("F_SETSIG", "import fcntl\nr, w = os.pipe()\nfcntl.fcntl(r, 10, 9)"),
        ("F_SETOWN_EX", "import fcntl, struct\nr, w = os.pipe()\nfcntl.fcntl(r, 15, struct.pack('ii', 1, 1))"),
        ("O_ASYNC", "import fcntl\nr, w = os.pipe()\nfcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC)"),
        ("FIOSETOWN", "import fcntl, struct\nr, w = os.pipe()\nfcntl.ioctl(r, 0x8901, struct.pack('i', 1))"),
        ("setpriority", "os.setpriority(os.PRIO_PROCESS, 2, 19)"),
        ("sched_setaffinity", "os.sched_setaffinity(2, {0})"),
        ("prlimit", "import resource\nresource.prlimit(2, resource.RLIMIT_CPU, (1, 1))"),
        ("shmget", "assert libc.shmget(1234, 4096, 0o1666) == -1, 'shmget'\nraise OSError(ctypes.get_errno(), 'x')"),
        ("msgget", "assert libc.msgget(1234, 0o1666) == -1, 'msgget'\nraise OSError(ctypes.get_errno(), 'x')"),
        ("kill", "os.kill(1, 9)"),
        ("PR_SET_PDEATHSIG", "assert libc.prctl(1, 0, 0, 0, 0) == -1\nraise OSError(ctypes.get_errno(), 'x')"),
        ("unshare", "os.unshare(0x20000) if hasattr(os, 'unshare') else libc.unshare(0x20000) == 0 or _e()"),
    ],
)
def test_signals_scheduling_and_ipc_outside_the_task_are_refused(sandbox: Runner, name: str, body: str) -> None:
    source = (
        probe(
            f"try:\n{_indent(body)}\nexcept OSError as exc:\n    return 'refused ' + str(exc.errno)\nreturn 'BREACHED'"
        )
        + "\ndef _e():\n    raise OSError(ctypes.get_errno(), 'x')\n"
    )
    assert sandbox.run(source) == f"OK:refused {errno_eperm()}", name


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def errno_eperm() -> int:
    import errno

    return errno.EPERM


def test_setpriority_on_itself_still_works(sandbox: Runner) -> None:
    assert sandbox.run(probe("os.setpriority(os.PRIO_PROCESS, 0, 5)\nreturn 'ok'")) == "OK:ok"


def test_the_scratch_space_is_bounded(sandbox: Runner) -> None:
    body = """
written = 0
try:
    with open('fill', 'wb') as f:
        while True:
            f.write(b'x' * 65536)
            f.flush()
            written += 65536
except OSError as exc:
    return f'{exc.errno} {written}'
"""
    result = sandbox.run(probe(body))
    assert result.startswith(f"OK:{28} "), result  # ENOSPC
    assert int(result.split()[1]) <= LIMITS.scratch_bytes


def test_a_full_scratch_fails_the_task_naming_the_limit(sandbox: Runner) -> None:
    body = "with open('/dev/shm/fill', 'wb') as f:\n    while True: f.write(b'x' * 65536); f.flush()"
    assert sandbox.run(probe(body)).startswith("FAILED:scratch space limit exceeded")


def test_memory_in_memfds_counts_against_the_memory_limit_or_is_refused() -> None:
    runner = Runner(LIMITS.model_copy(update={"memory_bytes": 256 * 1024**2}))
    try:
        body = """
chunk = b'x' * 1024**2
fds = []
for _ in range(32):
    fd = os.memfd_create('hoard')
    for _ in range(32):
        os.write(fd, chunk)
    fds.append(fd)
return 'BREACHED: held 1 GiB in memfds'
"""
        result = runner.run(probe(body))
        if runner.sandbox.isolation().startswith("full"):  # a memory cgroup counts memfd pages
            assert result == f"FAILED:memory limit of {256 * 1024**2} bytes exceeded"
        else:  # nothing would count them: memfd_create is refused
            assert result.startswith("FAILED:") and "Operation not permitted" in result, result
        assert runner.run(probe("return 'after'")) == "OK:after"
    finally:
        runner.close()


def test_threads_are_limited(sandbox: Runner) -> None:
    body = """
import threading
threading.stack_size(256 * 1024)  # so that memory is not what stops it
event = threading.Event()
threads = []
while len(threads) < 1000:
    thread = threading.Thread(target=event.wait)
    thread.start()
    threads.append(thread)
return 'BREACHED'
"""
    result = sandbox.run(probe(body))
    assert result.startswith(f"FAILED:thread limit of {LIMITS.pids} exceeded"), result


def test_outputs_are_read_back_through_the_service_descriptor(sandbox: Runner, tmp_path: Path) -> None:
    target = tmp_path / "out"
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    files = TaskFiles(outputs={"out": fd})
    body = """
with teaclave_open('out', 'wb') as out:
    out.write(b'mine')
for name in ('out', '/tmp/out'):
    try:
        os.symlink('/etc/passwd', name)
    except OSError:
        pass
return 'wrote'
"""
    try:
        assert sandbox.run(probe(body), files) == "OK:wrote"
        assert files.created == {"out"}
        with files.read_output("out") as stream:
            assert stream.read() == b"mine"
    finally:
        files.close()


def test_hundreds_of_tasks_in_a_row_all_finish(sandbox: Runner) -> None:
    """Nothing accumulates per task in the template (its output pipes, its children, its groups)."""

    async def many() -> list[str]:
        return await asyncio.gather(*(sandbox.run_async(probe(f"return '{i}'")) for i in range(400)))

    assert sandbox.loop.run_until_complete(many()) == [f"OK:{i}" for i in range(400)]


def test_no_shared_terminal_and_no_counting_by_uid(sandbox: Runner) -> None:
    body = """
try:
    open('/dev/ptmx', 'rb')
    return 'BREACHED: opened a pty'
except OSError:
    pass
return f"{os.listdir('/dev/pts')} {os.getuid()}"
"""
    results = [sandbox.run(probe(body)) for _ in range(6)]
    assert all(r.startswith("OK:[] ") for r in results), results
    if ROOT:
        uids = [int(r.split()[-1]) for r in results]
        # Drawn at random: consecutive tasks do not get consecutive uids that count them.
        assert [b - a for a, b in itertools.pairwise(uids)] != [1] * 5, uids


@pytest.mark.parametrize("prepared", [0, 3])
def test_closing_leaves_no_process_group_or_uid_behind(prepared: int) -> None:
    runner = Runner(LIMITS.model_copy(update={"prepared_sandboxes": prepared}))
    results = [runner.run(probe(f"return '{i}'")) for i in range(4)]
    sandbox = runner.sandbox
    template = sandbox._process.pid if sandbox._process else None
    groups = [*sandbox._cgroups._parents.values()] if sandbox._cgroups else []
    runner.close()
    assert results == [f"OK:{i}" for i in range(4)]
    assert template is not None and not Path(f"/proc/{template}").exists()
    assert all(not group.exists() for group in groups)
    assert sandbox._uids is None or not sandbox._uids._busy


# A uid range of this test's own, which no other sandbox on the host (another test run, a running
# platform) draws from: whatever still runs as one of its uids was left behind by this test.
OWN_UIDS = LIMITS.model_copy(update={"first_task_uid": 1_400_000_000 + os.getpid() % 1000 * 64, "task_uids": 64})


def _task_processes(limits: SandboxLimits) -> list[int]:
    """Processes running as one of ``limits``' task uids, anywhere on the host."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            uid = entry.stat().st_uid if entry.name.isdigit() else -1
        except OSError:
            continue
        if limits.first_task_uid <= uid < limits.first_task_uid + limits.task_uids:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("how", ["wall time", "cancel"])
def test_a_stopped_task_leaves_no_process(how: str) -> None:
    runner = Runner(OWN_UIDS.model_copy(update={"wall_seconds": 2, "prepared_sandboxes": 0}))
    source = probe("import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()\ntime.sleep(600)")
    try:
        if how == "wall time":
            assert runner.run(source) == "FAILED:wall time limit of 2 s exceeded"
        else:

            async def cancel_after_start() -> None:
                job = asyncio.ensure_future(runner.run_async(source))
                await asyncio.sleep(1)
                job.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await job

            runner.loop.run_until_complete(asyncio.wait_for(cancel_after_start(), 20))
        if ROOT:
            assert _task_processes(OWN_UIDS) == []
    finally:
        runner.close()


def test_everything_printed_before_returning_is_in_the_log(sandbox: Runner) -> None:
    """The task's process hands back its result before it exits: its log must be whole by then."""
    source = "def entrypoint(argv):\n    for i in range(300):\n        print('line', i)\n    return 'done'\n"
    task = StagedTask(uuid.uuid4(), uuid.uuid4(), "u", "mesapy", "python", "f", {}, source.encode(), {}, {})
    for _ in range(5):
        outputs = sandbox.loop.run_until_complete(sandbox.sandbox.run(ExecutorKind.PYTHON, task, TaskFiles()))
        assert outputs.return_value == b"done"
        assert outputs.log == tuple(f"line {i}" for i in range(300))
