"""The execution service's side of the sandbox: start the zygote in bubblewrap, hand it tasks.

Fails closed: without bubblewrap, or when the zygote cannot start, tasks fail with the reason
and no function runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

import cloister
from cloister.config import SandboxLimits
from cloister.executors.base import TaskFiles, prepare_work_dir, wants_log
from cloister.executors.sandbox import protocol
from cloister.functions import FunctionError
from cloister.model.tasks import StagedTask, TaskOutputs

logger = logging.getLogger(__name__)

_START_TIMEOUT = 60.0
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


def runtime_paths() -> list[str]:
    """What the zygote must read: this Python, its libraries, its packages, this package."""
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
    return [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]


def bwrap_command(bwrap: str, fd: int, work_dir: Path) -> list[str]:
    command = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for path in (*_SYSTEM_PATHS, *runtime_paths()):
        if os.path.exists(path):
            command += ["--ro-bind", path, path]
    # Tasks' directories, under unguessable names in a directory nobody inside may list (0311).
    command += ["--bind", str(work_dir), str(work_dir)]
    command += ["--dev", "/dev", "--remount-ro", "/", "--chdir", "/"]
    command += ["--", sys.executable, "-I", "-m", "cloister.executors.sandbox.zygote", str(fd)]
    return command


class Sandbox:
    """One zygote per execution service; ``run`` forks it a child per task."""

    def __init__(self, limits: SandboxLimits, work_dir: Path) -> None:
        self._limits = limits
        self.work_dir = prepare_work_dir(work_dir)
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        self._exits: dict[str, asyncio.Future[str | None]] = {}
        self._lock = asyncio.Lock()

    async def _zygote(self) -> socket.socket:
        async with self._lock:
            if self._socket is not None and self._process is not None and self._process.poll() is None:
                return self._socket
            await self._start()
            assert self._socket is not None
            return self._socket

    async def _start(self) -> None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailableError(
                "sandbox unavailable: bubblewrap (bwrap) is not installed; install it (apt-get install bubblewrap)"
            )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                bwrap_command(bwrap, theirs.fileno(), self.work_dir),
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
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), _START_TIMEOUT)
        except (TimeoutError, ConnectionError) as exc:
            detail = self._stderr_tail()
            self._reset()
            raise SandboxUnavailableError(f"sandbox unavailable: the worker did not start ({detail or exc})") from None
        logger.info("sandbox worker started (pid %d)", self._process.pid)

    def _stderr_tail(self) -> str:
        process = self._process
        if process is None or process.stderr is None:
            return ""
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        if process.poll() is None:
            return ""
        return process.stderr.read()[-500:].decode(errors="replace").strip()

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
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._process = None

    async def run(self, kind: str, task: StagedTask, files: TaskFiles) -> TaskOutputs:
        """Run ``task``'s function of ``kind`` in a fresh child; cancelling kills the child.

        Raises:
            FunctionError: the function failed, hit a limit, or the sandbox is unavailable.
        """
        sock = await self._zygote()
        task_id = f"{task.task_id}-{uuid.uuid4().hex[:8]}"
        scratch = files.root / "scratch"
        scratch.mkdir(mode=0o700, exist_ok=True)
        spec_path = files.root / "spec.json"
        names = (list(files.inputs), list(files.outputs))
        spec = {
            "kind": kind,
            "scratch": str(scratch),
            "function_name": task.function_name,
            "payload_hex": task.function_payload.hex(),
            "arguments": task.function_arguments,
            "limits": asdict(self._limits),
            "inputs": {name: 3 + i for i, name in enumerate(names[0])},
            "outputs": {name: 3 + len(names[0]) + i for i, name in enumerate(names[1])},
        }
        spec_path.write_text(json.dumps(spec))
        result_read, result_write = os.pipe()
        log_read, log_write = os.pipe()
        sent = [
            os.open(spec_path, os.O_RDONLY),
            result_write,
            log_write,
            *(os.open(files.inputs[name], os.O_RDONLY) for name in names[0]),
            *(os.open(files.outputs[name], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600) for name in names[1]),
        ]
        exit_future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._exits[task_id] = exit_future
        try:
            protocol.send(sock, {"op": "run", "id": task_id, "limits": asdict(self._limits)}, sent)
        finally:
            for fd in sent:
                os.close(fd)
        result_reader = _read_all(result_read, 1 << 24)
        log_reader = _read_all(log_read, self._limits.log_bytes)
        try:
            reason = await exit_future
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                protocol.send(sock, {"op": "cancel", "id": task_id})
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(exit_future), 5)
            raise
        finally:
            raw_result = await result_reader
            raw_log = await log_reader
        return _outcome(reason, raw_result, raw_log, files, wants_log(task))

    async def close(self) -> None:
        async with self._lock:
            self._reset()


def _read_all(fd: int, limit: int) -> asyncio.Future[bytes]:
    """Everything from ``fd`` up to ``limit`` bytes, read on the event loop; the rest is read and
    dropped so the writer never blocks. The descriptor is closed at end of file."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()
    kept = bytearray()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            while chunk := os.read(fd, 65536):
                if len(kept) < limit:
                    kept.extend(chunk[: limit - len(kept)])
        except BlockingIOError:
            return
        except OSError:
            pass
        loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.set_result(bytes(kept))

    loop.add_reader(fd, readable)
    return future


def _outcome(reason: str | None, raw_result: bytes, raw_log: bytes, files: TaskFiles, want_log: bool) -> TaskOutputs:
    try:
        result = json.loads(raw_result) if raw_result else None
    except ValueError:
        result = None
    for name, path in files.outputs.items():
        if result is None or name not in result.get("created", []):
            path.unlink(missing_ok=True)  # an output the function never created does not exist
    if reason is not None:
        raise FunctionError(reason)
    if result is None:
        raise FunctionError("the function's process ended without a result")
    if not result.get("ok"):
        raise FunctionError(str(result.get("reason", "the function failed")))
    value = result["text"].encode() if "text" in result else bytes.fromhex(result["hex"])
    log = tuple(raw_log.decode(errors="replace").splitlines()) if want_log else ()
    return TaskOutputs(return_value=value, log=log)


async def run_sandboxed(sandbox: Sandbox, kind: str, task: StagedTask, io: object) -> TaskOutputs:
    """Run ``task`` in ``sandbox`` with its staged files, or in a fresh empty directory if it has none."""
    if isinstance(io, TaskFiles):
        return await sandbox.run(kind, task, io)
    directory = Path(tempfile.mkdtemp(dir=sandbox.work_dir))
    try:
        return await sandbox.run(kind, task, TaskFiles(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
