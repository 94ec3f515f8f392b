"""While a service is down, clients are told which one, never where it runs; once it is back,
the same clients work again without reconnecting by hand."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from conftest import NO_FUNCTIONS, admin
from http_fixture_server import LOOPBACK_ENV

from cloister.errors import UnavailableError
from cloister.services.authentication.feed import TRUST_SECONDS
from cloister.testing import RunningPlatform, start_platform


@pytest.mark.parametrize("service", ["authentication", "access_control", "management"])
def test_an_outage_names_the_service_and_heals(own_platform: RunningPlatform, service: str) -> None:
    root = admin(own_platform)
    assert root.frontend.list_functions(own_platform.admin_user) == NO_FUNCTIONS
    own_platform.platform.stop_service(service)
    with pytest.raises(UnavailableError) as down:
        root.frontend.list_functions(own_platform.admin_user)
    name = service.replace("_", " ")
    assert down.value.message == f"the {name} service is unavailable; try again shortly"
    assert "127.0.0.1" not in down.value.message and "incorrent" not in down.value.message
    own_platform.platform.start_service(service)
    assert root.frontend.list_functions(own_platform.admin_user) == NO_FUNCTIONS
    root.close()


@pytest.fixture(scope="module")
def patient_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """Calls between services may take a minute: only the dead-peer bound can cut them short."""
    env = {**LOOPBACK_ENV, "CLOISTER_RPC__CALL_TIMEOUT_SECONDS": "60", "CLOISTER_RPC__PEER_TIMEOUT_SECONDS": "3"}
    with start_platform(tmp_path_factory.mktemp("patient"), env=env) as running:
        yield running


@pytest.mark.parametrize("service", ["authentication", "access_control", "management"])
def test_a_stopped_peer_is_reported_within_the_peer_timeout(patient_platform: RunningPlatform, service: str) -> None:
    """A stopped process accepts connections and answers nothing: its callers learn it is down
    from its silence to pings (rpc.peer_timeout_seconds, 3 s here), not at the 60 s call deadline."""
    root = admin(patient_platform)
    assert root.frontend.list_functions(patient_platform.admin_user) == NO_FUNCTIONS
    pid = patient_platform.platform.processes[service].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        if service == "authentication":
            # The frontend answers from what authentication told it about the token for as long
            # as its feed of user changes may be silent, then asks authentication again.
            time.sleep(TRUST_SECONDS + 0.5)
        for _ in range(2):  # on the connection in use, then on a new one
            started = time.monotonic()
            with pytest.raises(UnavailableError) as down:
                root.frontend.list_functions(patient_platform.admin_user)
            assert down.value.message == f"the {service.replace('_', ' ')} service is unavailable; try again shortly"
            assert time.monotonic() - started < 30, "the call waited for its deadline"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert root.frontend.list_functions(patient_platform.admin_user) == NO_FUNCTIONS
    root.close()


LONG_TASK = b"""
import time
def entrypoint(argv):
    time.sleep(4)
    return "still here"
"""


def test_long_tasks_run_after_storage_is_killed_and_restarted(own_platform: RunningPlatform) -> None:
    """Execution keeps heartbeating through storage's restarts: a task longer than the executor
    timeout (3 s here) is not failed as lost."""
    root = admin(own_platform)
    function_id = root.frontend.register_function("long", "sleeps 4 s", "python", payload=LONG_TASK)
    for _ in range(3):
        own_platform.platform.kill_service("storage")
        own_platform.platform.start_service("storage")
        task_id = root.frontend.create_task(function_id, {}, "python")
        root.frontend.invoke_task(task_id)
        assert root.frontend.get_task_result(task_id) == b"still here"
    root.close()


def test_a_scheduler_paused_longer_than_the_executor_timeout_fails_no_healthy_task(
    own_platform: RunningPlatform,
) -> None:
    root = admin(own_platform)
    payload = LONG_TASK.replace(b"time.sleep(4)", b"time.sleep(7)")
    function_id = root.frontend.register_function("longer", "sleeps 7 s", "python", payload=payload)
    task_id = root.frontend.create_task(function_id, {}, "python")
    root.frontend.invoke_task(task_id)
    time.sleep(1.5)  # running by now
    scheduler = own_platform.platform.processes["scheduler"].pid
    os.kill(scheduler, signal.SIGSTOP)
    try:
        time.sleep(5)  # the executor timeout is 3 s
    finally:
        os.kill(scheduler, signal.SIGCONT)
    assert root.frontend.get_task_result(task_id) == b"still here"
    root.close()
