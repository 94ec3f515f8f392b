"""Killed services come back by themselves, where their peers knew them, and the platform works on."""

from __future__ import annotations

import os
import signal

from conftest import admin, wait_back

from cloister.cli.health import check_all
from cloister.launcher import START_ORDER
from cloister.rpc import addresses
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform


def test_every_service_killed_comes_back_within_5_s_and_serves(own_platform: RunningPlatform) -> None:
    root = admin(own_platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    for name in START_ORDER:
        endpoint_before = {e: addresses.published(own_platform.platform.settings, e) for e in ("frontend", "storage")}
        old_pid = own_platform.platform.processes[name].pid
        os.kill(old_pid, signal.SIGKILL)
        wait_back(own_platform, name, old_pid)
        endpoint_after = {e: addresses.published(own_platform.platform.settings, e) for e in ("frontend", "storage")}
        assert endpoint_after == endpoint_before  # back on the ports it first bound
        task_id = root.frontend.create_task(function_id, {"message": f"after {name}"}, "builtin")
        root.frontend.invoke_task(task_id)
        assert root.frontend.get_task_result(task_id) == f"after {name}".encode()
    status = check_all(own_platform.platform.settings)
    assert all(ok for ok, _ in status.values()), status
    assert "1 restart" in status["storage"][1] and "1 restart" in status["execution"][1]
    assert set(own_platform.platform.restarts().values()) == {1}
    root.close()
