"""The launcher keeps one standby process, imports done, that becomes the next service to start:
a restart pays only for what is the service's own (``cloister.serve``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from cloister_cli import processes_mentioning
from conftest import admin, wait_back

from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform


def _command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def standbys(state_dir: Path) -> list[int]:
    """The live standby processes of the platform in ``state_dir``."""
    return [pid for pid in processes_mentioning(str(state_dir)) if "--standby" in _command_line(pid)]


def one_standby(state_dir: Path, within: float = 10.0) -> int:
    """The pid of the platform's one standby, once there is one: the launcher starts the next
    standby just after the service that took the last one is ready."""
    deadline = time.monotonic() + within
    while (found := standbys(state_dir)) != found[:1] or not found:
        assert time.monotonic() < deadline, f"standbys: {found}"
        time.sleep(0.05)
    return found[0]


def _echo_works(platform: RunningPlatform, message: str) -> None:
    root = admin(platform)
    try:
        function_id = root.frontend.register_function(
            "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
        )
        task_id = root.frontend.create_task(function_id, {"message": message}, "builtin")
        root.frontend.invoke_task(task_id)
        assert root.frontend.get_task_result(task_id) == message.encode()
    finally:
        root.close()


def test_a_killed_service_comes_back_as_the_standby_and_another_standby_waits(own_platform: RunningPlatform) -> None:
    standby = one_standby(own_platform.state_dir)
    assert _parent(standby) == os.getpid() and _command_line(standby)[1:4] == ["-m", "cloister.serve", "--standby"]
    for name in ("storage", "authentication"):  # authentication also reads the admin password first
        old = own_platform.platform.processes[name].pid
        os.kill(old, signal.SIGKILL)
        wait_back(own_platform, name, old)
        assert own_platform.platform.processes[name].pid == standby  # the standby became it
        standby = one_standby(own_platform.state_dir)  # and another one waits
        assert standby not in {p.pid for p in own_platform.platform.processes.values()}
    _echo_works(own_platform, "after two restarts")


def test_a_dead_standby_is_replaced_by_an_ordinary_start(own_platform: RunningPlatform) -> None:
    standby = one_standby(own_platform.state_dir)
    os.kill(standby, signal.SIGKILL)
    old = own_platform.platform.processes["frontend"].pid
    os.kill(old, signal.SIGKILL)
    wait_back(own_platform, "frontend", old)
    assert own_platform.platform.processes["frontend"].pid != standby
    assert one_standby(own_platform.state_dir) != standby
    _echo_works(own_platform, "after a dead standby")


def test_a_standby_that_died_is_reaped_and_replaced_by_a_start_that_bypasses_it(own_platform: RunningPlatform) -> None:
    platform = own_platform.platform
    standby = one_standby(own_platform.state_dir)
    os.kill(standby, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{standby}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed standby did not die"
        time.sleep(0.02)
    platform.stop_service("access_control")
    platform.start_service("access_control", extra_env={"PYTHONSAFEPATH": "1"})  # not one for the standby
    assert not Path(f"/proc/{standby}").exists()  # reaped, not left a zombie
    assert one_standby(own_platform.state_dir) != standby  # and another one waits
    _echo_works(own_platform, "after a standby died")


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(entry.partition("=")[::2] for entry in raw.split("\0") if entry)


def test_only_settings_are_handed_to_the_standby_what_acts_at_interpreter_start_starts_afresh(
    own_platform: RunningPlatform,
) -> None:
    platform = own_platform.platform
    standby = one_standby(own_platform.state_dir)
    platform.stop_service("access_control")
    platform.start_service("access_control", extra_env={"PYTHONSAFEPATH": "1"})  # too late for a running interpreter
    fresh = platform.processes["access_control"].pid
    assert fresh != standby and _environment(fresh).get("PYTHONSAFEPATH") == "1"
    assert standbys(own_platform.state_dir) == [standby]  # still waiting, and still the only one

    platform.stop_service("access_control")
    platform.start_service("access_control", extra_env={"CLOISTER_LOGGING__LEVEL": "DEBUG"})  # a setting
    assert platform.processes["access_control"].pid == standby
    [_] = standbys(own_platform.state_dir)
    _echo_works(own_platform, "after two starts")
    assert '"level": "DEBUG"' in (own_platform.state_dir / "logs" / "access_control.log").read_text()


def test_nothing_outlives_a_launcher_killed_with_sigkill(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from cloister.testing import start_platform
        start_platform(Path({str(tmp_path)!r}))
        print("started", flush=True)
        time.sleep(600)
        """
    )
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout is not None and launcher.stdout.readline() == "started\n"
        state_dir = tmp_path / "state"
        one_standby(state_dir)
        assert len(processes_mentioning(str(state_dir))) == 9
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 30
        while processes_mentioning(str(state_dir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_mentioning(str(state_dir)) == []
    finally:
        launcher.kill()
        launcher.wait()
        if launcher.stdout is not None:
            launcher.stdout.close()
