"""What the security suite shares: a platform with tenants, victims, and one verdict protocol.

Every hostile function returns ``report(verdict, detail, **extra)``: a JSON object whose
``verdict`` is ``CONTAINED`` (the OS or the platform refused; ``detail`` names the errno or
exception) or ``BREACHED`` (the attack worked; ``detail`` is the evidence). A task that fails
is classified by its reason against the reasons the test accepts; anything else is
``UNDECIDED``, and an undecided probe fails its test like a breach does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from http_fixture_server import LOOPBACK_ENV, FixtureHTTPServer

from cloister.crypto.files import decrypt_file
from cloister.errors import CloisterError, TaskError
from cloister.model.files import FileCrypto
from cloister.model.tasks import TaskStatus
from cloister.sdk import (
    AuthenticationService,
    DataMap,
    FrontendService,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    OwnerList,
)
from cloister.testing import RunningPlatform, start_platform

EXAMPLES_WASM = Path(__file__).resolve().parents[2] / "examples" / "wasm"

CONTAINED = "CONTAINED"
BREACHED = "BREACHED"
UNDECIDED = "UNDECIDED"

BASE_LIMITS = {
    "CLOISTER_SANDBOX__CPU_SECONDS": "4",
    "CLOISTER_SANDBOX__WALL_SECONDS": "10",
    "CLOISTER_SANDBOX__MEMORY_BYTES": str(1024**3),
    "CLOISTER_SANDBOX__OUTPUT_BYTES": str(10 * 1024**2),
    "CLOISTER_SANDBOX__LOG_BYTES": "8192",
    "CLOISTER_SANDBOX__WASM_FUEL": "2000000000",
    "CLOISTER_EXECUTION__SLOTS": "6",
}
"""Tight limits as in tests/e2e/test_executors.py, and slots for a victim, an attacker and a bystander."""

# ------------------------------------------------------------------------------------------------
# The prelude every hostile Python function starts with.
# ------------------------------------------------------------------------------------------------

PRELUDE = r'''
import ctypes as _ctypes
import errno as _errno
import json as _json
import os as _os
import platform as _platform
import time as _time

_NR_X86_64 = {
    "read": 0, "write": 1, "close": 3, "ioctl": 16, "shmget": 29, "shmat": 30, "shmctl": 31,
    "getpid": 39, "socket": 41, "connect": 42, "socketpair": 53, "clone": 56, "fork": 57,
    "vfork": 58, "execve": 59, "kill": 62, "semget": 64, "semctl": 66, "shmdt": 67, "msgget": 68,
    "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "fcntl": 72, "chmod": 90, "ptrace": 101,
    "getuid": 102, "getppid": 110, "getpgid": 121, "rt_sigqueueinfo": 129, "setpriority": 141,
    "getpriority": 140, "sched_setscheduler": 144, "mount": 165, "gettid": 186, "tkill": 200,
    "sched_setaffinity": 203, "sched_getaffinity": 204, "getdents64": 217, "timer_create": 222,
    "tgkill": 234, "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
    "add_key": 248, "keyctl": 250, "ioprio_set": 251, "ioprio_get": 252, "openat": 257,
    "unlinkat": 263, "linkat": 265, "symlinkat": 266, "fchmodat": 268, "unshare": 272,
    "rt_tgsigqueueinfo": 297, "perf_event_open": 298, "prlimit64": 302, "setns": 308,
    "process_vm_readv": 310, "kcmp": 312, "sched_setattr": 314, "sched_getattr": 315,
    "renameat2": 316, "memfd_create": 319, "bpf": 321, "execveat": 322, "userfaultfd": 323,
    "pidfd_send_signal": 424, "io_uring_setup": 425, "pidfd_open": 434, "clone3": 435,
}
_NR = {"x86_64": _NR_X86_64}[_platform.machine()]
libc = _ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = _ctypes.c_long
AT_FDCWD = -100
REFUSALS = {"EPERM", "EACCES", "ENOSYS", "EROFS", "ESRCH", "ENOENT", "ENOTTY", "EINVAL", "ENOSPC",
            "ENOMEM", "EDQUOT", "EFBIG", "EAGAIN", "EXDEV", "ENOTDIR", "EBADF", "ENAMETOOLONG"}


def ename(code):
    return _errno.errorcode.get(code, str(code))


def sysc(name, *args):
    """A raw system call: (result, errno name or '')."""
    converted = [_ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    _ctypes.set_errno(0)
    result = libc.syscall(_ctypes.c_long(_NR[name]), *converted)
    return result, ("" if result >= 0 else ename(_ctypes.get_errno()))


_T0 = _time.time()  # the module runs when the task starts


def report(verdict, detail, **extra):
    """The probe's verdict, and the window it probed in (t0: task start, t1: now) unless given."""
    window = {"t0": _T0, "t1": _time.time()}
    return _json.dumps({"verdict": verdict, "detail": str(detail)[:3000], **window, **extra}, default=repr)


def arguments(argv):
    return dict(zip(argv[::2], argv[1::2]))


def os_error(exc):
    return ename(exc.errno) if getattr(exc, "errno", None) else type(exc).__name__


def visible_pids(limit=4096):
    """Pids this process can see (getpgid answers for them), itself included."""
    found = []
    for pid in range(1, limit):
        result, error = sysc("getpgid", pid)
        if result >= 0 or error not in ("ESRCH",):
            found.append(pid)
    return found


def read_tree(root, limit=200):
    """(path, first bytes or error) for files under root, walking what can be walked."""
    seen = []
    for directory, subdirs, files in _os.walk(root):
        for name in files:
            path = _os.path.join(directory, name)
            try:
                with open(path, "rb") as handle:
                    seen.append((path, handle.read(200)))
            except OSError as exc:
                seen.append((path, os_error(exc)))
            if len(seen) >= limit:
                return seen
    return seen
'''


def python_payload(body: str) -> bytes:
    """A hostile function: the prelude, then ``body`` (which defines ``entrypoint(argv)``)."""
    return (PRELUDE + "\n" + body.strip("\n") + "\n").encode()


ECHO = b"def entrypoint(argv):\n    return argv[1]\n"

# ------------------------------------------------------------------------------------------------
# Outcomes and verdicts
# ------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """How a task ended: ``text`` when it finished, ``reason`` when it failed."""

    task_id: str
    ok: bool
    text: str = ""
    reason: str = ""
    log: tuple[str, ...] = ()

    @property
    def everything(self) -> str:
        """All the task let its creator see."""
        return "\n".join([self.text, self.reason, *self.log])

    @property
    def data(self) -> dict:
        try:
            value = json.loads(self.text)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def judge(
    outcome: Outcome, *, contained_reasons: Iterable[str] = (), breached_reasons: Iterable[str] = ()
) -> tuple[str, str]:
    """(verdict, evidence) for a hostile task."""
    if outcome.ok:
        data = outcome.data
        verdict = data.get("verdict")
        if verdict in (CONTAINED, BREACHED):
            return verdict, str(data.get("detail", ""))
        return UNDECIDED, f"unclassifiable result {outcome.text[:500]!r}"
    for reason in contained_reasons:
        if reason in outcome.reason:
            return CONTAINED, f"task failed: {outcome.reason[:500]}"
    for reason in breached_reasons:
        if reason in outcome.reason:
            return BREACHED, f"task failed: {outcome.reason[:500]}"
    return UNDECIDED, f"task failed with an unexpected reason: {outcome.reason[:800]!r}"


def expect_contained(
    outcome: Outcome,
    record: Callable[[str, object], None] | None = None,
    *,
    contained_reasons: Iterable[str] = (),
    breached_reasons: Iterable[str] = (),
) -> str:
    """Fail the test unless the attack was contained; the evidence otherwise."""
    verdict, evidence = judge(outcome, contained_reasons=contained_reasons, breached_reasons=breached_reasons)
    if record is not None:
        record("verdict", f"{verdict}: {evidence[:300]}")
    assert verdict == CONTAINED, f"{verdict}: {evidence}"
    return evidence


def leaks(text: str, secrets_: Iterable[bytes | str]) -> list[str]:
    """Which of ``secrets_`` appear in ``text`` (plain, hex or base64)."""
    found = []
    for secret in secrets_:
        raw = secret.encode() if isinstance(secret, str) else secret
        forms = {raw.decode(errors="replace"), raw.hex(), base64.b64encode(raw).decode(), repr(raw)[2:-1]}
        if any(form and form in text for form in forms):
            found.append(raw.decode(errors="replace"))
    return found


# ------------------------------------------------------------------------------------------------
# Tenants and the arena
# ------------------------------------------------------------------------------------------------


@dataclass
class Tenant:
    user: str
    auth: AuthenticationService
    frontend: FrontendService

    def close(self) -> None:
        self.auth.close()
        self.frontend.close()


@dataclass
class OutputSlot:
    """An aes-gcm-128 output file on the arena's HTTP server, with the key its owner knows."""

    data_id: str
    path: Path
    key: bytes
    iv: bytes

    def plaintext(self, scratch: Path) -> bytes | None:
        """What was uploaded, decrypted; None when nothing was."""
        if not self.path.exists():
            return None
        target = scratch / f"{self.path.name}.{secrets.token_hex(4)}.plain"
        decrypt_file(FileCrypto("aes-gcm-128", self.key, self.iv), self.path, target)
        return target.read_bytes()


@dataclass
class Arena:
    """One running platform, its HTTP file server, and tenants created on demand."""

    platform: RunningPlatform
    served: Path
    server: FixtureHTTPServer
    scratch: Path
    tenants: dict[str, Tenant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def state(self) -> Path:
        return self.platform.state_dir

    @property
    def work_dir(self) -> Path:
        return self.platform.state_dir / "execution"

    def _login(self, user: str, password: str) -> Tenant:
        auth = AuthenticationService(*self.platform.connection_args("authentication"))
        auth.user_login(user, password)
        frontend = FrontendService(*self.platform.connection_args("frontend"))
        frontend.metadata = dict(auth.metadata or {})
        return Tenant(user, auth, frontend)

    def tenant(self, name: str) -> Tenant:
        """A user of its own (a PlatformAdmin, so it may register functions and create tasks)."""
        with self._lock:
            if name not in self.tenants:
                if not self.tenants:
                    self.tenants["__admin"] = self._login(self.platform.admin_user, self.platform.admin_password)
                admin = self.tenants["__admin"]
                password = f"{name}-{secrets.token_hex(8)}"
                admin.auth.user_register(name, password, "PlatformAdmin", "")
                self.tenants[name] = self._login(name, password)
            return self.tenants[name]

    def close(self) -> None:
        for tenant in self.tenants.values():
            tenant.close()

    # -- files ------------------------------------------------------------------------------

    def raw_input(self, tenant: Tenant, data: bytes) -> str:
        url = "data:text/plain;base64," + base64.b64encode(data).decode()
        return tenant.frontend.register_input_file(url, "raw", b"", b"", bytes(16))

    def output(self, tenant: Tenant, label: str) -> OutputSlot:
        name = f"{label}-{secrets.token_hex(6)}"
        key, iv = AESGCM.generate_key(bit_length=128), os.urandom(12)
        data_id = tenant.frontend.register_output_file(self.server.url(f"out/{name}"), "aes-gcm-128", key, iv)
        return OutputSlot(data_id, self.served / "out" / name, key, iv)

    # -- tasks ------------------------------------------------------------------------------

    def submit(
        self,
        tenant: Tenant,
        payload: bytes,
        args: Mapping[str, str] | None = None,
        *,
        executor: str = "python",
        inputs: Mapping[str, str] | None = None,
        outputs: Mapping[str, str] | None = None,
        save_log: bool = True,
    ) -> str:
        """Register ``payload`` as a function of ``tenant`` and invoke a task of it; the task id."""
        arguments = dict(args or {})
        if save_log and executor == "python":
            arguments["save_log"] = "true"
        inputs, outputs = dict(inputs or {}), dict(outputs or {})
        function_id = tenant.frontend.register_function(
            f"security-{secrets.token_hex(3)}",
            "hostile function",
            "python" if executor == "python" else "wasm",
            payload=payload,
            arguments=[FunctionArgument(key) for key in arguments],
            inputs=[FunctionInput(name) for name in inputs],
            outputs=[FunctionOutput(name) for name in outputs],
        )
        me = [tenant.user]
        task_id = tenant.frontend.create_task(
            function_id,
            arguments,
            executor,
            inputs_ownership=[OwnerList(name, me) for name in inputs],
            outputs_ownership=[OwnerList(name, me) for name in outputs],
        )
        if inputs or outputs:
            tenant.frontend.assign_data_to_task(
                task_id,
                [DataMap(name, data_id) for name, data_id in inputs.items()],
                [DataMap(name, data_id) for name, data_id in outputs.items()],
            )
        tenant.frontend.invoke_task(task_id)
        return task_id

    def finish(self, tenant: Tenant, task_id: str) -> Outcome:
        try:
            text = tenant.frontend.get_task_result(task_id)
        except TaskError as error:
            return Outcome(task_id, False, reason=error.reason)
        log = tuple(tenant.frontend.wait_task(task_id).result.Ok.log)
        return Outcome(task_id, True, text=text.decode(errors="replace"), log=log)

    def run(self, tenant: Tenant, payload: bytes, args: Mapping[str, str] | None = None, **kwargs) -> Outcome:
        return self.finish(tenant, self.submit(tenant, payload, args, **kwargs))

    def wait_running(self, tenant: Tenant, task_id: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = TaskStatus(int(tenant.frontend.get_task(task_id).get("status", 0)))
            if status is TaskStatus.RUNNING or status.is_ended:
                return
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} did not start within {timeout} s")

    def assert_healthy(self) -> None:
        """A bystander's ordinary echo task, run after the attack, returns its message."""
        bystander = self.tenant("bystander")
        message = f"still here {secrets.token_hex(4)}"
        outcome = self.run(bystander, ECHO, {"message": message}, save_log=False)
        assert outcome.ok and outcome.text == message, f"platform unhealthy after the attack: {outcome}"


@contextlib.contextmanager
def open_arena(directory: Path, env: Mapping[str, str]) -> Iterator[Arena]:
    served = directory / "served"
    (served / "out").mkdir(parents=True)
    scratch = directory / "scratch"
    scratch.mkdir()
    (directory / "platform").mkdir()
    platform_env = {**LOOPBACK_ENV, **env}  # the arena's files are served on loopback
    with FixtureHTTPServer(served) as server, start_platform(directory / "platform", env=platform_env) as platform:
        arena = Arena(platform, served, server, scratch)
        try:
            yield arena
        finally:
            arena.close()
        # The platform heals a crashed service by itself; an attack must not have needed that.
        assert not any(platform.platform.restarts().values()), platform.platform.restarts()


# ------------------------------------------------------------------------------------------------
# Victims: another tenant's task holding a secret while an attack runs
# ------------------------------------------------------------------------------------------------

VICTIM = python_payload(r"""
import hashlib
import time


def entrypoint(argv):
    args = arguments(argv)
    started = _time.time()
    secret = teaclave_open("secret", "rb").read()
    # Working copies where programs keep them: a scratch file, /dev/shm, a private SysV segment.
    copies = []
    for path in ("victim-scratch.bin", "/dev/shm/victim-" + args["tag"]):
        try:
            with open(path, "wb") as handle:
                handle.write(secret + b"|" + args["pin"].encode())
            copies.append(path)
        except OSError:
            pass
    segment, _ = sysc("shmget", 0, 4096, 0o1600)
    if segment >= 0:
        libc.shmat.restype = _ctypes.c_void_p
        address = libc.shmat(segment, None, 0)
        if address not in (None, _ctypes.c_void_p(-1).value):
            _ctypes.memmove(address, secret, len(secret))
    _time.sleep(float(args["sleep"]))
    with teaclave_open("result", "wb") as out:
        out.write(b"digest:" + hashlib.sha256(secret + args["pin"].encode()).hexdigest().encode())
    for path in copies:
        try:
            _os.unlink(path)
        except OSError:
            pass
    if segment >= 0:
        sysc("shmctl", segment, 0, 0)  # IPC_RMID
    return _json.dumps({"uid": _os.getuid(), "pid": _os.getpid(), "start": started, "end": _time.time()})
""")


@dataclass
class Victim:
    arena: Arena
    tenant: Tenant
    task_id: str
    secret: bytes
    pin: str
    slot: OutputSlot
    outcome: Future[Outcome]

    @property
    def secrets(self) -> tuple[bytes, ...]:
        return (self.secret, self.pin.encode())

    def result(self) -> Outcome:
        return self.outcome.result(timeout=120)

    def check(self) -> dict:
        """The victim finished with exactly its own output; its report (uid, pid, start, end)."""
        outcome = self.result()
        assert outcome.ok, f"the victim task failed: {outcome.reason}"
        expected = b"digest:" + hashlib.sha256(self.secret + self.pin.encode()).hexdigest().encode()
        uploaded = self.slot.plaintext(self.arena.scratch)
        assert uploaded == expected, f"the victim's output was tampered with: {uploaded!r} != {expected!r}"
        return json.loads(outcome.text)


_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="security-wait")


def start_victim(arena: Arena, *, sleep: float = 2.0, user: str = "victim") -> Victim:
    """Another tenant's task that holds its secret for ``sleep`` seconds, then writes its digest."""
    tenant = arena.tenant(user)
    tag = secrets.token_hex(4)
    secret = f"VICTIM-SECRET-{secrets.token_hex(12)}".encode()
    pin = f"VICTIM-PIN-{secrets.token_hex(8)}"
    slot = arena.output(tenant, "victim")
    task_id = arena.submit(
        tenant,
        VICTIM,
        {"tag": tag, "pin": pin, "sleep": str(sleep)},
        inputs={"secret": arena.raw_input(tenant, secret)},
        outputs={"result": slot.data_id},
        save_log=False,
    )
    future = _POOL.submit(arena.finish, tenant, task_id)
    return Victim(arena, tenant, task_id, secret, pin, slot, future)


def attack_beside_victim(
    arena: Arena,
    payload: bytes,
    args: Mapping[str, str] | None = None,
    *,
    sleep: float = 2.0,
    attacker: str = "mallory",
    settle: float = 0.4,
    **kwargs,
) -> tuple[Outcome, Victim]:
    """Start a victim, wait until it runs and holds its secret, then run the attack beside it."""
    victim = start_victim(arena, sleep=sleep)
    arena.wait_running(victim.tenant, victim.task_id)
    time.sleep(settle)
    outcome = arena.run(arena.tenant(attacker), payload, args, **kwargs)
    victim.result()
    return outcome, victim


def assert_no_leak(outcome: Outcome, victim: Victim) -> None:
    found = leaks(outcome.everything, victim.secrets)
    assert not found, f"BREACHED: the victim's secrets {found} reached the attacker: {outcome.everything[:1500]!r}"


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root`` → (size, sha256 prefix) for files, (-1, '') for the rest."""
    entries: dict[str, tuple[int, str]] = {}
    for directory, _, files in os.walk(root):
        entries[directory] = (-1, "")
        for name in files:
            path = os.path.join(directory, name)
            try:
                data = Path(path).read_bytes() if not os.path.islink(path) else b""
                entries[path] = (len(data), hashlib.sha256(data).hexdigest()[:16])
            except OSError:
                entries[path] = (-1, "")
    return entries


def unexpected_changes(
    before: Mapping[str, tuple[int, str]],
    after: Mapping[str, tuple[int, str]],
    allowed: Iterable[str | re.Pattern[str]] = (),
) -> list[str]:
    """Paths created, changed or removed between two snapshots, except those containing an ``allowed``
    part or matching an ``allowed`` pattern."""
    allowed = tuple(allowed)
    changed = []
    for path in sorted(set(before) | set(after)):
        if any(part.search(path) if isinstance(part, re.Pattern) else part in path for part in allowed):
            continue
        if path not in before:
            changed.append(f"created {path}")
        elif path not in after:
            changed.append(f"removed {path}")
        elif before[path] != after[path]:
            changed.append(f"changed {path}")
    return changed


STATE_CHURN = (
    "/logs/",
    "/storage/cloister.db",
    "/authentication/users.db",
    "/run/",
    re.compile(r"/audit-spool/[a-z_]+/[0-9]{20}\.spool$"),  # segments come and go as entries are shipped
)
"""Paths under the state directory that change in normal operation."""


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def require_ok(call: Callable[[], object]) -> object:
    """Run a set-up RPC; a refusal there is a test error, not a verdict."""
    try:
        return call()
    except CloisterError as error:  # pragma: no cover - set-up failure
        pytest.fail(f"set-up call failed: {error}")
