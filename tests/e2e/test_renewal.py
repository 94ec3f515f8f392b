"""Certificates are renewed before they expire, and no call in flight is dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import admin

from cloister.rpc.channel import fetch_certificate
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform, start_platform

LIFETIME = 6.0  # seconds: renewed every 4 s


@pytest.fixture
def short_lived(tmp_path: Path) -> Iterator[RunningPlatform]:
    with start_platform(tmp_path, env={"CLOISTER_ATTESTATION__CERTIFICATE_LIFETIME_SECONDS": str(LIFETIME)}) as running:
        yield running


def test_tasks_keep_running_across_certificate_renewals(short_lived: RunningPlatform) -> None:
    root = admin(short_lived)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    first_certificate = fetch_certificate(short_lived.frontend_address, None)

    # A long wait, started before any renewal and answered after several.
    waiting_task = root.frontend.create_task(function_id, {"message": "waited"}, "builtin")
    waited: list[int] = []
    waiter = threading.Thread(target=lambda: waited.append(root.frontend.wait_task(waiting_task, 30).status))
    waiter.start()

    deadline = time.monotonic() + 2.5 * LIFETIME
    completed = 0
    while time.monotonic() < deadline:
        task_id = root.frontend.create_task(function_id, {"message": f"n{completed}"}, "builtin")
        root.frontend.invoke_task(task_id)
        assert root.frontend.get_task_result(task_id) == f"n{completed}".encode()
        completed += 1
        if completed % 20 == 0:
            root = admin(short_lived)  # new connections must verify the renewed certificates too
    root.frontend.invoke_task(waiting_task)
    waiter.join()

    assert waited == [10]  # Finished, on a call that spanned the renewals
    assert completed > 10
    assert fetch_certificate(short_lived.frontend_address, None) != first_certificate
