"""The execution service's side of the sandbox: start the template in bubblewrap, and for each
task give it a uid, a cgroup and its files as descriptors.

Fails closed: without bubblewrap, or when the template cannot start or a task cannot be
isolated, tasks fail with the reason and no function runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import json
import logging
import os
import secrets
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloister
from cloister.config import SandboxLimits
from cloister.executors.base import TaskFiles, task_log
from cloister.executors.sandbox import protocol, seccomp
from cloister.executors.sandbox.cgroups import CgroupTree, TaskCgroup, open_cgroups
from cloister.executors.sandbox.isolation import SCRATCH
from cloister.functions import FunctionError
from cloister.model.tasks import StagedTask, TaskOutputs

logger = logging.getLogger(__name__)

_START_TIMEOUT = 60.0
_PROBE_TIMEOUT = 30.0
_PROBE_CODE = (
    "import sys\n"
    "from cloister.executors.sandbox import seccomp\n"
    "try:\n"
    "    seccomp.install(memfd=False)\n"
    "except seccomp.SeccompUnavailableError as exc:\n"
    "    sys.exit(f'seccomp: {exc}')\n"
)
"""Run inside the template's outer sandbox by :func:`probe`: loads the task filter into itself."""
_SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/alternatives")
_ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


class SandboxUnavailableError(FunctionError):
    """The sandbox cannot be set up here; nothing was run."""


@functools.cache
def runtime_paths() -> tuple[str, ...]:
    """What the template must read: this Python, its libraries, its packages, this package
    (fixed for the life of the process, so worked out once)."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        str(Path(cloister.__file__).resolve().parent.parent),
        *site.getsitepackages(),
    }
    paths = sorted(p for p in candidates if p and os.path.exists(p))
    # Drop paths already inside another one: bwrap binds each once.
    return tuple(p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths))


def missing_requirement() -> str | None:
    """What this host lacks for any sandbox (bubblewrap, libseccomp), or None; starts no process."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed; install it (apt-get install bubblewrap)"
    try:
        seccomp.require_library()
    except seccomp.SeccompUnavailableError as exc:
        return str(exc)
    return None


def probe(private: Iterable[Path] = ()) -> None:
    """Make the template's outer sandbox once and load the task filter inside it, as every task's
    sandbox will, so that ``cloister up`` refuses a host where every task would fail.

    It checks what :func:`missing_requirement` checks and what only a real run shows: that
    bubblewrap may create the namespaces here (user namespaces when not root), that the runtime
    is visible inside, and that the kernel accepts the seccomp filter.

    Raises:
        SandboxUnavailableError: what is missing, or what bubblewrap or the filter said.
    """
    missing = missing_requirement()
    if missing is not None:
        raise SandboxUnavailableError(f"sandbox unavailable: {missing}")
    check_private(private)
    bwrap = shutil.which("bwrap") or "bwrap"
    inner = [sys.executable, "-I", "-c", _PROBE_CODE]
    try:
        run = subprocess.run(
            bwrap_command(bwrap, inner, privileged=os.geteuid() == 0),
            env=_ENVIRONMENT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailableError(f"sandbox unavailable: bubblewrap could not be run ({exc})") from None
    if run.returncode != 0:
        said = run.stderr.decode(errors="replace").strip().splitlines()
        detail = said[-1] if said else f"exit status {run.returncode}"
        raise SandboxUnavailableError(f"sandbox unavailable: a test sandbox failed ({detail})")


def bwrap_command(bwrap: str, inner: Sequence[str], *, privileged: bool) -> list[str]:
    """The template's outer sandbox around ``inner``: a read-only view of the runtime, no
    network, no ``/proc``.

    ``privileged`` (the service runs as root): the template keeps exactly the capabilities it
    needs to isolate each task and give it its own host uid. Otherwise it gets them inside a user
    namespace, where only the service's own uid is mapped.
    """
    command = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    command += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if not privileged:
        command += ["--unshare-user", "--uid", "0", "--gid", "0"]
    # CAP_KILL: the template's death, and its kills, must reach sandboxes running as other uids;
    # CAP_DAC_OVERRIDE: a sandbox makes mount points in its task-owned /tmp before becoming the task.
    for capability in ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE"):
        command += ["--cap-add", capability]
    # Each task mounts its own tmpfs over /tmp; the template's is never written. It comes first,
    # so that a runtime installed under /tmp is bound on top of it, not hidden by it.
    command += ["--tmpfs", SCRATCH]
    bound = [path for path in (*_SYSTEM_PATHS, *runtime_paths()) if os.path.exists(path)]
    # Directories bwrap would make for the binds' parents are 0700 root-owned: the task's uid
    # could not pass them. They are made searchable first.
    parents = sorted({str(parent) for path in bound for parent in Path(path).parents if parent != Path("/")})
    for parent in parents:
        if parent not in bound and parent != SCRATCH:
            command += ["--perms", "0755", "--dir", parent]
    for path in bound:
        command += ["--ro-bind", path, path]
    for alias, path in scratch_rebinds():
        command += ["--ro-bind", path, alias]
    command += ["--dev", "/dev", "--remount-ro", "/", "--chdir", "/"]
    command += ["--", *inner]
    return command


@functools.cache
def scratch_rebinds() -> tuple[tuple[str, str], ...]:
    """(alias, path) for each runtime path under the task's scratch mount point: a task's tmpfs
    would hide it, so each sandbox binds it again from the alias (see ``isolation``)."""
    inside = [p for p in runtime_paths() if p == SCRATCH or p.startswith(SCRATCH + "/")]
    return tuple((f"/.cloister-runtime/{number}", path) for number, path in enumerate(inside))


def check_private(directories: Iterable[Path]) -> None:
    """Refuse to start when a private directory (state, keys, staged data) would be visible
    inside the sandbox because it lies within a path the sandbox binds.

    Raises:
        SandboxUnavailableError: naming the directory and the bound path.
    """
    bound = [Path(p) for p in (*_SYSTEM_PATHS, *runtime_paths())]
    for directory in directories:
        resolved = directory.resolve()
        for path in bound:
            if resolved == path or path in resolved.parents:
                raise SandboxUnavailableError(
                    f"sandbox unavailable: {directory} lies inside {path}, which tasks can read; "
                    "choose a state directory outside the Python installation and this package"
                )


class _TaskUids:
    """Host uids for tasks from a reserved range, each used by one task at a time, drawn at
    random so that a task's uid says nothing about how many tasks ran before it."""

    def __init__(self, first: int, count: int) -> None:
        self._first, self._count = first, count
        self._busy: set[int] = set()

    def acquire(self) -> int:
        if len(self._busy) >= self._count:
            raise FunctionError(f"sandbox: all {self._count} task uids are in use")
        while (uid := self._first + secrets.randbelow(self._count)) in self._busy:
            pass
        self._busy.add(uid)
        return uid

    def release(self, uid: int) -> None:
        self._busy.discard(uid)


@dataclass
class _Prepared:
    """A sandbox made for one task: isolated, as its uid, in its cgroup, waiting on ``channel``."""

    id: str
    uid: int | None
    group: TaskCgroup | None
    channel: socket.socket
    exit: asyncio.Future[str | None]
    generation: int
    """Which template made it: a sandbox outlives no restart of its template."""


class Sandbox:
    """One template per execution service; ``run`` gives each task a sandbox of its own.

    ``[sandbox] prepared_sandboxes`` sandboxes are kept ready (isolated, waiting for a task) so
    that isolating a task costs it no latency; each is used once.
    """

    def __init__(self, limits: SandboxLimits, private: Iterable[Path] = ()) -> None:
        self._limits = limits
        self._private = tuple(private)
        self._privileged = os.geteuid() == 0
        self._uids = _TaskUids(limits.first_task_uid, limits.task_uids) if self._privileged else None
        self._cgroups: CgroupTree | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        self._exits: dict[str, asyncio.Future[str | None]] = {}
        self._lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._spares: collections.deque[_Prepared] = collections.deque()
        self._refilling: asyncio.Task[None] | None = None
        self._disposals: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._started = False
        self._stderr = bytearray()

    def isolation(self) -> str:
        """How tasks are isolated here, for the service's log and ``cloister status``; a
        description that starts with ``WEAKER`` or ``UNAVAILABLE`` says what is missing."""
        self._open()
        lacking = missing_requirement()
        if lacking is not None:
            return f"UNAVAILABLE: {lacking}; python, wasm and built-in tasks fail"
        missing = [
            *(() if self._uids else ["not root, so every task runs as the service's host uid"]),
            *(() if self._cgroups else ["no cgroup, so memory and threads are bounded by rlimits only"]),
        ]
        groups = self._cgroups.description if self._cgroups else "rlimits"
        layers = f"own namespaces, tmpfs, {'host uid' if self._uids else 'capabilities dropped'}, {groups}"
        return f"WEAKER ({'; '.join(missing)}): {layers}" if missing else f"full: each task in its {layers}"

    def _open(self) -> None:
        if not self._started:
            self._started = True
            self._cgroups = open_cgroups() if self._privileged else None

    async def _zygote(self) -> socket.socket:
        async with self._lock:
            if self._socket is not None and self._process is not None and self._process.poll() is None:
                return self._socket
            await self._start()
            assert self._socket is not None
            return self._socket

    async def _start(self) -> None:
        missing = missing_requirement()
        if missing is not None:
            raise SandboxUnavailableError(f"sandbox unavailable: {missing}")
        bwrap = shutil.which("bwrap") or "bwrap"
        check_private(self._private)
        self._open()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                bwrap_command(bwrap, _zygote_command(theirs.fileno()), privileged=self._privileged),
                pass_fds=[theirs.fileno()],
                env=_ENVIRONMENT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_message)
        # Drained as it comes, so that nothing the template prints can ever block it.
        self._stderr = bytearray()
        assert self._process.stderr is not None
        os.set_blocking(self._process.stderr.fileno(), False)
        loop.add_reader(self._process.stderr.fileno(), self._on_stderr)
        try:
            async with asyncio.timeout(_START_TIMEOUT):  # not wait_for: see _wait_ready
                await asyncio.shield(self._ready)
        except (TimeoutError, ConnectionError) as exc:
            detail = self._stderr_tail()
            self._reset()
            raise SandboxUnavailableError(f"sandbox unavailable: the worker did not start ({detail or exc})") from None
        self._generation += 1
        logger.info("sandbox template started (pid %d)", self._process.pid)

    def _on_stderr(self) -> None:
        process = self._process
        if process is None or process.stderr is None:
            return
        try:
            chunk = os.read(process.stderr.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(process.stderr.fileno())
            return
        self._stderr = (self._stderr + chunk)[-2000:]
        logger.warning("sandbox template: %s", chunk[:500].decode(errors="replace").strip())

    def _stderr_tail(self) -> str:
        process = self._process
        if process is None or process.stderr is None:
            return ""
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        with contextlib.suppress(OSError):
            self._stderr += os.read(process.stderr.fileno(), 65536)
        return self._stderr[-500:].decode(errors="replace").strip()

    def _on_message(self) -> None:
        assert self._socket is not None
        try:
            received = protocol.receive(self._socket)
        except BlockingIOError:
            return
        except OSError:
            received = None
        if received is None:
            self._zygote_died()
            return
        message, fds = received
        for fd in fds:
            os.close(fd)
        if message.get("op") == "ready" and self._ready and not self._ready.done():
            self._ready.set_result(None)
        elif message.get("op") == "exit":
            future = self._exits.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message.get("reason"))

    def _zygote_died(self) -> None:
        logger.error("sandbox worker exited: %s", self._stderr_tail() or "no message")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConnectionError("the worker exited"))
        for future in self._exits.values():
            if not future.done():
                future.set_result("the sandbox worker died while running the task")
        self._exits.clear()
        self._reset()

    def _reset(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
            if self._process.stderr is not None:
                with contextlib.suppress(ValueError, RuntimeError):
                    asyncio.get_running_loop().remove_reader(self._process.stderr.fileno())
                self._process.stderr.close()
        self._process = None

    async def run(self, kind: str, task: StagedTask, files: TaskFiles) -> TaskOutputs:
        """Run ``task``'s function of ``kind`` in a sandbox of its own; cancelling kills it.

        Raises:
            FunctionError: the function failed, hit a limit, or the sandbox is unavailable.
        """
        prepared = await self._take()
        try:
            return await self._run(prepared, kind, task, files)
        finally:
            # Off the task's path: the sandbox's namespaces may take a while to be torn down.
            disposal = asyncio.create_task(self._dispose(prepared), name="sandbox-dispose")
            self._disposals.add(disposal)
            disposal.add_done_callback(self._disposals.discard)

    async def _take(self) -> _Prepared:
        """A prepared sandbox: a spare if one is ready, else a new one; spares are refilled."""
        while self._spares:
            prepared = self._spares.popleft()
            if prepared.generation == self._generation and not prepared.exit.done():
                self._refill_soon()
                return prepared
            await self._dispose(prepared)
        prepared = await self._prepare()
        self._refill_soon()
        return prepared

    def _refill_soon(self) -> None:
        if self._limits.prepared_sandboxes and (self._refilling is None or self._refilling.done()):
            self._refilling = asyncio.create_task(self._refill(), name="sandbox-refill")

    async def _refill(self) -> None:
        try:
            while len(self._spares) < self._limits.prepared_sandboxes:
                self._spares.append(await self._prepare())
        except FunctionError as exc:
            logger.warning("cannot prepare a sandbox ahead of its task: %s", exc.reason)

    async def _prepare(self) -> _Prepared:
        """Have the template make one sandbox: isolated, as its uid, in its cgroup, waiting for a task."""
        sock = await self._zygote()
        sandbox_id = uuid.uuid4().hex
        uid = self._uids.acquire() if self._uids else None
        group: TaskCgroup | None = None
        try:
            if self._cgroups is not None:
                try:
                    group = self._cgroups.create(sandbox_id, self._limits.memory_bytes, self._limits.pids)
                except OSError as exc:
                    raise SandboxUnavailableError(
                        f"sandbox: cannot make the task's cgroup ({exc}); it was not run"
                    ) from None
            procs = group.open_procs() if group is not None else []
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            message = {
                "op": "prepare",
                "id": sandbox_id,
                "limits": self._limits.model_dump(),
                "identity": {
                    "uid": uid,
                    "scratch_bytes": self._limits.scratch_bytes,
                    "shm_bytes": self._limits.shm_bytes,
                    "rebinds": scratch_rebinds(),
                },
                "memfd": group is not None,
                "cgroups": len(procs),
            }
            exit_future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._exits[sandbox_id] = exit_future
            try:
                await self._send(sock, message, [*procs, theirs.fileno()])
            except BaseException:
                self._exits.pop(sandbox_id, None)
                ours.close()
                raise
            finally:
                for fd in procs:
                    os.close(fd)
                theirs.close()
            ours.setblocking(False)
            return _Prepared(sandbox_id, uid, group, ours, exit_future, self._generation)
        except BaseException:
            await self._release(uid, group)
            raise

    async def _dispose(self, prepared: _Prepared) -> None:
        """End ``prepared`` (killing whatever still runs in it) and give back its uid and cgroup."""
        prepared.channel.close()
        await self._cancel(prepared)
        await self._release(prepared.uid, prepared.group)

    async def _cancel(self, prepared: _Prepared) -> None:
        """Have the template kill ``prepared``'s process (and so its pid namespace), and wait until it has."""
        if prepared.exit.done() or prepared.generation != self._generation or self._socket is None:
            return
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._send(self._socket, {"op": "cancel", "id": prepared.id}), 5)
            await asyncio.wait_for(asyncio.shield(prepared.exit), 5)

    async def _release(self, uid: int | None, group: TaskCgroup | None) -> None:
        if group is not None:
            await asyncio.to_thread(group.remove)
        if uid is not None and self._uids:
            self._uids.release(uid)

    async def _run(self, prepared: _Prepared, kind: str, task: StagedTask, files: TaskFiles) -> TaskOutputs:
        await self._wait_ready(prepared)
        inputs, outputs = list(files.inputs), list(files.outputs)
        spec = {
            "kind": kind,
            "function_name": task.function_name,
            "arguments": task.function_arguments,
            "inputs": {name: i for i, name in enumerate(inputs)},
            "outputs": {name: len(inputs) + i for i, name in enumerate(outputs)},
        }
        result_read, result_write = os.pipe()
        log_read, log_write = os.pipe()
        sent = [
            _sealed(json.dumps(spec).encode()),
            _sealed(task.function_payload),
            result_write,
            log_write,
            *(os.open(files.inputs[name], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC) for name in inputs),
            *(os.dup(files.outputs[name]) for name in outputs),
        ]
        try:
            protocol.send(prepared.channel, {"op": "run"}, sent)
        except BaseException:
            os.close(result_read)
            os.close(log_read)
            raise
        finally:
            for fd in sent:
                os.close(fd)
        result_reader = _read_all(result_read, 1 << 24)
        log_reader = _read_all(log_read, self._limits.log_bytes)
        try:
            if self._socket is not None:  # the wall clock starts now
                await self._send(self._socket, {"op": "arm", "id": prepared.id})
            # The process closes its result pipe as it exits, before its namespaces are torn
            # down: a finished function's outcome is known then, without waiting for the rest.
            await asyncio.wait({prepared.exit, result_reader}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self._cancel(prepared)
            raise
        finally:
            if prepared.group is not None:  # its last threads too: nothing outlives the outcome
                prepared.group.kill_all()
            raw_result, _ = await result_reader
            printed, dropped = await log_reader
        outcome = _Outcome.parse(raw_result, set(outputs))
        # A complete report means the function returned: the kill above, which the template may
        # report first, is not why it ended.
        reason = None
        if outcome is None or not outcome.ok:
            reason = await prepared.exit  # it ended abnormally: the template says how
        group = prepared.group
        if group is not None and group.memory_exceeded():
            reason = f"memory limit of {self._limits.memory_bytes} bytes exceeded"
        elif outcome is not None and not outcome.ok and _hit_thread_limit(outcome, group):
            reason = f"thread limit of {self._limits.pids} exceeded ({outcome.reason})"
        files.created |= outcome.created if outcome is not None else set()
        log = task_log(printed, limit=self._limits.log_bytes, dropped=dropped)
        return _task_outputs(reason, outcome, log)

    async def _wait_ready(self, prepared: _Prepared) -> None:
        """Wait for the task's process to say it is ready (at once for a spare).

        Raises:
            SandboxUnavailableError: the sandbox could not be made, with the reason.
        """
        loop = asyncio.get_running_loop()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for loses a cancellation that
            # arrives as the awaited call completes, and the cancelled task would run on.
            async with asyncio.timeout(_START_TIMEOUT):
                hello = await loop.sock_recv(prepared.channel, protocol.MAX_MESSAGE)
        except (TimeoutError, OSError):
            hello = b""
        try:
            answer = json.loads(hello) if hello else {}
        except ValueError:
            answer = {}
        if isinstance(answer, dict) and answer.get("ready") is True:
            return
        reason = answer.get("failed") if isinstance(answer, dict) else None
        if not isinstance(reason, str):
            reason = (prepared.exit.result() if prepared.exit.done() else None) or "it did not start"
        raise SandboxUnavailableError(f"sandbox: cannot isolate the task ({reason}); it was not run")

    async def _send(self, sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
        """Send to the template, waiting while its socket is full (many tasks at once)."""
        loop = asyncio.get_running_loop()
        async with self._send_lock:
            while True:
                try:
                    protocol.send(sock, message, fds or [])
                    return
                except BlockingIOError:
                    writable: asyncio.Future[None] = loop.create_future()
                    loop.add_writer(sock.fileno(), _resolve, writable)
                    try:
                        await writable
                    finally:
                        loop.remove_writer(sock.fileno())

    async def close(self) -> None:
        if self._refilling is not None:
            self._refilling.cancel()
            with contextlib.suppress(BaseException):
                await self._refilling
        while self._spares:
            await self._dispose(self._spares.popleft())
        await asyncio.gather(*self._disposals, return_exceptions=True)
        async with self._lock:
            self._reset()
            if self._cgroups is not None:
                self._cgroups.close()
                self._cgroups = None
                self._started = False
        self._stderr = bytearray()


def _zygote_command(fd: int) -> list[str]:
    return [sys.executable, "-I", "-m", "cloister.executors.sandbox.zygote", str(fd)]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _hit_thread_limit(outcome: _Outcome, group: TaskCgroup | None) -> bool:
    if group is not None:
        return group.pids_exceeded()
    return "can't start new thread" in outcome.reason  # RLIMIT_NPROC, as Python reports it


def _sealed(data: bytes) -> int:
    """A read-only memfd holding ``data``: the task reads its spec or payload, and can neither change
    nor grow it."""
    fd = os.memfd_create("task-spec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_all(fd: int, limit: int) -> asyncio.Future[tuple[bytes, bool]]:
    """Everything from ``fd`` up to ``limit`` bytes, and whether more came, read on the event loop;
    the rest is read and dropped so the writer never blocks. The descriptor is closed at end of file."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[bytes, bool]] = loop.create_future()
    kept = bytearray()
    dropped = False
    os.set_blocking(fd, False)

    def readable() -> None:
        nonlocal dropped
        try:
            while chunk := os.read(fd, 65536):
                room = max(limit - len(kept), 0)
                kept.extend(chunk[:room])
                dropped = dropped or len(chunk) > room
        except BlockingIOError:
            return
        except OSError:
            pass
        loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.set_result((bytes(kept), dropped))

    loop.add_reader(fd, readable)
    return future


class _Outcome:
    """What the task's process reported: written by the task, so checked field by field."""

    def __init__(self, ok: bool, value: bytes, reason: str, created: set[str]) -> None:
        self.ok, self.value, self.reason, self.created = ok, value, reason, created

    @classmethod
    def parse(cls, raw: bytes, outputs: set[str]) -> _Outcome | None:
        """The report, or None when it is missing or malformed."""
        try:
            data: Any = json.loads(raw) if raw else None
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            return None
        created = data.get("created", [])
        if not isinstance(created, list) or not all(isinstance(n, str) and n in outputs for n in created):
            return None
        if not data["ok"]:
            reason = data.get("reason")
            return cls(False, b"", reason if isinstance(reason, str) else "the function failed", set(created))
        if isinstance(data.get("text"), str):
            return cls(True, data["text"].encode(errors="replace"), "", set(created))
        try:
            return cls(True, bytes.fromhex(data["hex"]), "", set(created))
        except (KeyError, TypeError, ValueError):
            return None


def _task_outputs(reason: str | None, outcome: _Outcome | None, log: tuple[str, ...]) -> TaskOutputs:
    if reason is not None:
        raise FunctionError(reason)
    if outcome is None:
        raise FunctionError("the function's process ended without a readable result")
    if not outcome.ok:
        raise FunctionError(outcome.reason)
    return TaskOutputs(return_value=outcome.value, log=log)


async def run_sandboxed(sandbox: Sandbox, kind: str, task: StagedTask, io: object) -> TaskOutputs:
    """Run ``task`` in ``sandbox`` with its staged files, or with none."""
    return await sandbox.run(kind, task, io if isinstance(io, TaskFiles) else TaskFiles())
