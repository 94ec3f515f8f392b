"""What a user installs works on its own: ``python -m build`` gives a wheel that installs into a
fresh virtual environment (dependencies from the package index, without the ``vision`` extra),
whose ``cloister up`` starts a platform that runs a sandboxed Python task.

This catches package data left out of the wheel (policy files, the sandbox's runtime) and code
that only works from a checkout. It needs the package index, as any ``pip install`` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cloister.testing import write_test_config

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import sys
from cloister import Client
from cloister.errors import TaskFailedError

PRINTS = b"def entrypoint(argv):\\n    print('hello from the wheel')\\n    return 'ok'\\n"
with Client.connect_local(sys.argv[1]) as client:
    function = client.functions.register("prints", executor="python", payload=PRINTS)
    task = client.tasks.create(function, {})
    task.invoke()
    result = task.result(timeout=60)
    print("python:", result.return_value.decode(), list(result.log))
    faces = client.functions.register("builtin-face-detection", executor="builtin", arguments=["image"])
    task = client.tasks.create(faces, {"image": [1, 2, 3]})
    task.invoke()
    try:
        task.result(timeout=60)
    except TaskFailedError as error:
        print("faces:", error.reason)
"""


def _run(command: list[str | Path], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-4000:]}"
    return result


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops ``cloister up``; its whole process group if it does not end."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_the_wheel_installs_alone_and_runs_a_platform(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], timeout=300)  # sdist, then wheel from it
    (wheel,) = dist.glob("cloister-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    _run([venv / "bin" / "pip", "install", "--quiet", str(wheel)], timeout=600)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "PYTHON"))}
    without_vision = subprocess.run(
        [venv / "bin" / "python", "-c", "import cloister, cv2"], capture_output=True, text=True, env=environment
    )
    assert "No module named 'cv2'" in without_vision.stderr  # OpenCV comes only with the vision extra

    usage = _run([venv / "bin" / "cloister", "--help"], timeout=60, env=environment, cwd=tmp_path)
    assert "up" in usage.stdout and "status" in usage.stdout

    config, state = write_test_config(tmp_path), tmp_path / "state"
    environment["CLOISTER_ADMIN_PASSWORD"] = "wheel-admin-password"
    where = ["--config", str(config), "--state-dir", str(state)]
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [venv / "bin" / "cloister", "up", *where],
        cwd=tmp_path,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            status = subprocess.run(
                [venv / "bin" / "cloister", "status", *where], capture_output=True, text=True, env=environment
            )
            if status.returncode == 0:
                break
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-4000:]
            assert time.monotonic() < deadline, status.stdout + status.stderr
            time.sleep(1)
        assert " up " in status.stdout + status.stderr

        script = tmp_path / "check.py"
        script.write_text(CHECK)
        checked = _run([venv / "bin" / "python", script, state], timeout=180, env=environment, cwd=tmp_path)
        assert "python: ok ['hello from the wheel']" in checked.stdout
        assert "faces: builtin-face-detection needs the 'vision' extra" in checked.stdout
    finally:
        _stop(up)
        log.close()
    assert up.returncode is not None
