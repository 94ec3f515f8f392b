"""Python and WebAssembly functions in sandboxed workers: they compute on their files and nothing else."""

from __future__ import annotations

import base64
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Session, admin
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from http_fixture_server import LOOPBACK_ENV, FixtureHTTPServer
from shared_fixtures import TEACLAVE_FIXTURES, fixture_cmac

from cloister import Client, Credentials, Crypto, Trust
from cloister.crypto.files import decrypt_file
from cloister.errors import TaskCancelledError, TaskFailedError
from cloister.model.files import FileCrypto
from cloister.sdk import DataMap, FunctionArgument, FunctionInput, FunctionOutput, OwnerList
from cloister.testing import RunningPlatform, start_platform

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wasm"
LIMITS = {
    "CLOISTER_SANDBOX__CPU_SECONDS": "4",
    "CLOISTER_SANDBOX__WALL_SECONDS": "8",
    "CLOISTER_SANDBOX__MEMORY_BYTES": str(1024**3),
    "CLOISTER_SANDBOX__OUTPUT_BYTES": str(10 * 1024**2),
    "CLOISTER_SANDBOX__LOG_BYTES": "4096",
    "CLOISTER_SANDBOX__WASM_FUEL": "2000000000",
}


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with start_platform(tmp_path_factory.mktemp("sandboxed"), env={**LOOPBACK_ENV, **LIMITS}) as running:
        yield running


def _run(
    session: Session,
    payload: bytes,
    arguments: dict,
    *,
    executor: str = "python",
    inputs: dict[str, str] | None = None,
    outputs: dict[str, str] | None = None,
    optional: tuple[str, ...] = (),
) -> str:
    """Register a function, create and invoke a task for it; the task id."""
    executor_type = "python" if executor in ("python", "mesapy") else "wasm"
    me = [session.user]
    function_id = session.frontend.register_function(
        "f",
        "test function",
        executor_type,
        payload=payload,
        arguments=[FunctionArgument(key) for key in arguments],
        inputs=[FunctionInput(n, optional=n in optional) for n in [*(inputs or {}), *optional]],
        outputs=[FunctionOutput(n) for n in outputs or {}],
    )
    task_id = session.frontend.create_task(
        function_id,
        arguments,
        executor,
        inputs_ownership=[OwnerList(n, me) for n in inputs or {}],
        outputs_ownership=[OwnerList(n, me) for n in outputs or {}],
    )
    if inputs or outputs:
        session.frontend.assign_data_to_task(
            task_id,
            [DataMap(n, i) for n, i in (inputs or {}).items()],
            [DataMap(n, i) for n, i in (outputs or {}).items()],
        )
    session.frontend.invoke_task(task_id)
    return task_id


def _raw_input(session: Session, text: bytes) -> str:
    return session.frontend.register_input_file(
        "data:text/plain;base64," + base64.b64encode(text).decode(), "raw", b"", b"", bytes(16)
    )


def _failure(session: Session, task_id: str) -> str:
    with pytest.raises(TaskFailedError) as caught:
        session.frontend.get_task_result(task_id)
    return caught.value.reason


ECHO = b"def entrypoint(argv):\n    assert argv[0] == 'message'\n    return argv[1]\n"


def test_python_echo_as_mesapy_and_python(sandboxed: RunningPlatform) -> None:
    root = admin(sandboxed)
    for executor in ("mesapy", "python"):
        task_id = _run(root, ECHO, {"message": f"Hello from {executor}"}, executor=executor)
        assert root.frontend.get_task_result(task_id) == f"Hello from {executor}".encode()


def test_python_uses_numpy_on_an_encrypted_input(sandboxed: RunningPlatform, tmp_path: Path) -> None:
    served = tmp_path / "served"
    shutil.copytree(TEACLAVE_FIXTURES / "functions" / "py_logistic_reg", served)
    root = admin(sandboxed)
    payload = b"""
import numpy as np
from teaclave import open as topen

def entrypoint(argv):
    rows = np.loadtxt(topen("training", "rb"), delimiter=",")
    x, y = rows[:, :-1], rows[:, -1]
    w = np.zeros(x.shape[1])
    for _ in range(int(argv[3])):  # argv: save_log, true, steps, 20 (sorted keys)
        p = 1 / (1 + np.exp(-x @ w))
        w -= 0.1 * x.T @ (p - y) / len(y)
    with teaclave_open("weights", "wb") as out:
        out.write(",".join(f"{v:.6f}" for v in w).encode())
    print("trained on", len(y), "rows")
    return str(len(y))
"""
    with FixtureHTTPServer(served) as server:
        training = root.frontend.register_input_file(
            server.url("train.enc"),
            "teaclave-file-128",
            bytes(16),
            b"",
            fixture_cmac("py_logistic_reg/train.enc"),
        )
        key, iv = AESGCM.generate_key(bit_length=128), bytes(12)
        weights = root.frontend.register_output_file(server.url("out/weights"), "aes-gcm-128", key, iv)
        task_id = _run(
            root,
            payload,
            {"steps": 20, "save_log": "true"},
            inputs={"training": training},
            outputs={"weights": weights},
        )
        rows = len((served / "train.txt").read_text().splitlines())
        assert root.frontend.get_task_result(task_id) == str(rows).encode()
        decrypt_file(FileCrypto("aes-gcm-128", key, iv), served / "out" / "weights", tmp_path / "weights")
    features = len((served / "train.txt").read_text().splitlines()[0].split(",")) - 1
    assert len((tmp_path / "weights").read_text().split(",")) == features
    assert any("trained on" in line for line in root.frontend.wait_task(task_id).result.Ok.log)


def test_python_with_an_optional_input_missing(sandboxed: RunningPlatform) -> None:
    root = admin(sandboxed)
    payload = b"""
def entrypoint(argv):
    present = teaclave_open("required", "rb").read().decode()
    try:
        teaclave_open("extra", "rb")
    except RuntimeError as error:
        return present + " / extra missing: " + str(error)
"""
    task_id = _run(root, payload, {}, inputs={"required": _raw_input(root, b"here")}, optional=("extra",))
    result = root.frontend.get_task_result(task_id).decode()
    assert result.startswith("here / extra missing: fileio_init")


def test_python_exception_fails_the_task_with_its_traceback(sandboxed: RunningPlatform) -> None:
    root = admin(sandboxed)
    task_id = _run(root, b"def entrypoint(argv):\n    x = {}\n    return x['missing']\n", {})
    reason = _failure(root, task_id)
    assert "KeyError: 'missing'" in reason and "return x['missing']" in reason


def test_wasm_simple_add_and_millionaire(sandboxed: RunningPlatform, tmp_path: Path) -> None:
    root = admin(sandboxed)
    add = (EXAMPLES / "simple_add.wat").read_bytes()
    assert root.frontend.get_task_result(_run(root, add, {"adder1": "3", "adder2": "4"}, executor="wasm")) == b"7"

    fixtures = TEACLAVE_FIXTURES / "functions" / "wamr_c_millionaire_problem"
    with FixtureHTTPServer(tmp_path) as server:
        key, iv = AESGCM.generate_key(bit_length=128), bytes(12)
        result = root.frontend.register_output_file(server.url("richer"), "aes-gcm-128", key, iv)
        task_id = _run(
            root,
            (EXAMPLES / "millionaire.wat").read_bytes(),
            {"input_file_id1": "pf_in_a", "input_file_id2": "pf_in_b", "output_file_id": "pf_out"},
            executor="wamr",
            inputs={
                "pf_in_a": _raw_input(root, (fixtures / "input_a.txt").read_bytes()),
                "pf_in_b": _raw_input(root, (fixtures / "input_b.txt").read_bytes()),
            },
            outputs={"pf_out": result},
        )
        assert root.frontend.get_task_result(task_id) == b"7"
        decrypt_file(FileCrypto("aes-gcm-128", key, iv), tmp_path / "richer", tmp_path / "richer.txt")
    assert (tmp_path / "richer.txt").read_bytes() == (fixtures / "expected_output.txt").read_bytes().strip()


def test_wasm_trap_and_endless_loop_fail_their_tasks(sandboxed: RunningPlatform) -> None:
    root = admin(sandboxed)
    assert _failure(root, _run(root, (EXAMPLES / "trap.wat").read_bytes(), {}, executor="wasm")).startswith("wasm trap")
    assert "fuel" in _failure(root, _run(root, (EXAMPLES / "loop.wat").read_bytes(), {}, executor="wasm"))


HOSTILE = {
    "read /etc/passwd": ("return open('/etc/passwd').read()", "No such file"),
    "read the state directory": ("return open('{state}/storage/storage.key', 'rb').read().hex()", "No such file"),
    "list /proc": ("import os\n    return str(os.listdir('/proc'))", "No such file"),
    "connect to a platform port": ("import socket\n    socket.create_connection(('127.0.0.1', 7777), 1)", "Permission"),
    "connect outside": ("import socket\n    socket.create_connection(('93.184.216.34', 80), 1)", "Permission"),
    "resolve a name": ("import socket\n    return str(socket.getaddrinfo('example.com', 80))", "name resolution"),
    "start a subprocess": ("import subprocess\n    subprocess.run(['ls'])", "Permission"),
    "fork": ("import os\n    os.fork()", "Permission"),
    "ctypes fork": (
        "import ctypes\n    assert ctypes.CDLL(None).fork() == -1\n    raise SystemExit('no fork')",
        "no fork",
    ),
    "signal the parent": ("import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)", "Permission"),
    "fork bomb": ("import os\n    while True: os.fork()", "Permission"),
    "memory bomb": ("x = []\n    while True: x.append(bytearray(10**8))", "memory"),
    "endless loop": ("while True: pass", "time limit"),
    "huge output": ("f = teaclave_open('out', 'wb')\n    while True: f.write(b'x' * 10**6)", "output size limit"),
    "write outside scratch": ("open('/evil', 'w')", "Read-only file system"),
    "list the state directory": ("import os\n    return str(os.listdir('{state}'))", "No such file"),
    "list the work directory": ("import os\n    return str(os.listdir('{state}/execution'))", "No such file"),
    "import the platform to reach keys": (
        "from cloister.config import load_settings\n    s = load_settings(None, {}, state_dir='{state}')\n"
        "    return open(s.state_dir / 'storage' / 'storage.key', 'rb').read().hex()",
        "No such file",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_function_is_contained(sandboxed: RunningPlatform, case: str, tmp_path: Path) -> None:
    body, expected = HOSTILE[case]
    root = admin(sandboxed)
    payload = f"def entrypoint(argv):\n    {body.replace('{state}', str(sandboxed.state_dir))}\n".encode()
    outputs = {}
    if "teaclave_open('out'" in body:
        outputs["out"] = root.frontend.register_output_file(
            "file:///nonexistent/out", "aes-gcm-128", bytes(16), bytes(12)
        )
    reason = _failure(root, _run(root, payload, {}, outputs=outputs))
    assert expected in reason, reason
    # The service is unharmed: the next task runs normally.
    assert root.frontend.get_task_result(_run(root, ECHO, {"message": "still here"})) == b"still here"


PRINTS = b"""
import sys
from teaclave import open as topen

def entrypoint(argv):
    rows = topen("rows", "rb").read().decode().splitlines()
    print("counted", len(rows), "rows")
    print("a warning on stderr", file=sys.stderr)
    return str(len(rows))
"""


def test_what_a_function_prints_reaches_every_participant(sandboxed: RunningPlatform) -> None:
    """No save_log argument: the printed lines come back in the result's log, to each participant."""
    trust = Trust.from_files(sandboxed.as_root_ca, sandboxed.enclave_info)

    def connect(user: str, password: str) -> Client:
        return Client.connect(
            sandboxed.frontend_address,
            trust=trust,
            credentials=Credentials(user, password),
            authentication=sandboxed.authentication_address,
        )

    with connect(sandboxed.admin_user, sandboxed.admin_password) as owner:
        owner.users.register("log_reader", "log-reader-password", "DataOwner", "log_org")
        with connect("log_reader", "log-reader-password") as reader:
            function = owner.functions.register("prints", executor="python", payload=PRINTS, inputs=["rows"])
            task = owner.tasks.create(function, {}, executor="python", inputs_ownership={"rows": "log_reader"})
            rows = reader.files.register_input(
                "data:text/plain;base64," + base64.b64encode(b"a\nb\nc\n").decode(), Crypto.raw(), bytes(16)
            )
            reader.tasks.get(task.id).assign(inputs={"rows": rows})
            for party in (owner, reader):
                party.tasks.get(task.id).approve()
            task.invoke()
            result = task.result(timeout=60)
            assert result.return_value == b"3"
            assert result.log == ("counted 3 rows", "a warning on stderr")
            assert reader.tasks.get(task.id).result().log == result.log


def test_huge_log_is_cut_at_the_limit_with_a_notice(sandboxed: RunningPlatform) -> None:
    root = admin(sandboxed)
    payload = b"def entrypoint(argv):\n    for i in range(100000): print('line', i)\n    return 'done'\n"
    task_id = _run(root, payload, {})
    assert root.frontend.get_task_result(task_id) == b"done"
    log = list(root.frontend.wait_task(task_id).result.Ok.log)
    assert log[:3] == ["line 0", "line 1", "line 2"]
    assert log[-1] == "[WARN cloister] task log truncated: it is limited to 4096 bytes ([sandbox] log_bytes)"
    assert len("\n".join(log).encode()) <= 4096  # LIMITS' log_bytes, the notice included
    assert "line 99999" not in log


def test_teaclave_save_log_argument_still_works(sandboxed: RunningPlatform) -> None:
    """A Teaclave client passes save_log "true": the function receives it, and the log is there."""
    root = admin(sandboxed)
    payload = b"def entrypoint(argv):\n    print('argv', argv)\n    return argv[1]\n"
    task_id = _run(root, payload, {"save_log": "true"})
    assert root.frontend.get_task_result(task_id) == b"true"
    assert list(root.frontend.wait_task(task_id).result.Ok.log) == ["argv ['save_log', 'true']"]


def test_cancel_a_running_task_while_another_completes(sandboxed: RunningPlatform) -> None:
    root = admin(sandboxed)
    looping = _run(root, b"import time\ndef entrypoint(argv):\n    while True: time.sleep(0.01)\n", {})
    # Wait until it runs, then let a normal task through beside it.
    root.frontend.wait_task(looping, 0.5)
    other = _run(root, ECHO, {"message": "beside"})
    assert root.frontend.get_task_result(other) == b"beside"
    root.frontend.cancel_task(looping)
    with pytest.raises(TaskCancelledError):
        root.frontend.get_task_result(looping)


def test_parallel_tasks_on_one_execution_service(sandboxed: RunningPlatform) -> None:
    root = admin(sandboxed)
    payload = b"import time\ndef entrypoint(argv):\n    time.sleep(0.5)\n    return argv[1]\n"
    ids = [_run(root, payload, {"n": str(i)}) for i in range(4)]
    results: dict[str, bytes] = {}

    def wait(task_id: str) -> None:
        results[task_id] = root.frontend.get_task_result(task_id)

    threads = [threading.Thread(target=wait, args=(t,)) for t in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[t] for t in ids] == [str(i).encode() for i in range(4)]
