"""A platform as ``start_platform`` gives it, the production default: task URLs cannot reach a server inside.

The "internal" server listens on loopback, which the execution service can reach and a participant cannot; it
holds a secret for an input URL to read and takes PUTs for an output URL to write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Session, admin, login
from http_fixture_server import FixtureHTTPServer

from cloister.errors import TaskFailedError
from cloister.sdk import DataMap, FunctionArgument, FunctionInput, FunctionOutput, OwnerList
from cloister.testing import RunningPlatform, start_platform

SETTING = "[execution] allowed_networks (CLOISTER_EXECUTION__ALLOWED_NETWORKS)"
REFUSAL = f", which tasks may not reach; allow it with {SETTING}"
WRITER = b"""
def entrypoint(argv):
    with teaclave_open("result", "wb") as out:
        out.write(b"attacker-chosen bytes")
    return "written"
"""


@pytest.fixture(scope="module")
def default_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with start_platform(tmp_path_factory.mktemp("default")) as running:
        yield running


@pytest.fixture(scope="module")
def mallory(default_platform: RunningPlatform) -> Session:
    admin(default_platform).auth.user_register("mallory", "mallory-password", "PlatformAdmin", "")
    return login(default_platform, "mallory", "mallory-password")


@pytest.fixture
def internal(tmp_path: Path) -> Iterator[FixtureHTTPServer]:
    root = tmp_path / "internal"
    root.mkdir()
    (root / "secret.txt").write_bytes(b"internal secret")
    with FixtureHTTPServer(root) as server:
        yield server


def _failure(session: Session, task_id: str) -> str:
    with pytest.raises(TaskFailedError) as caught:
        session.frontend.get_task_result(task_id)
    return caught.value.reason


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("localhost", "localhost resolves to a loopback address (127.0.0.1)"),
    ],
)
def test_an_input_url_cannot_read_an_internal_server(
    mallory: Session, internal: FixtureHTTPServer, host: str, reason: str
) -> None:
    url = internal.url("secret.txt", host=host)
    function_id = mallory.frontend.register_function(
        "builtin-echo", "echo, with an input", "builtin",
        arguments=[FunctionArgument("message")], inputs=[FunctionInput("stolen")],
    )  # fmt: skip
    task_id = mallory.frontend.create_task(
        function_id, {"message": "hi"}, "builtin", inputs_ownership=[OwnerList("stolen", [mallory.user])]
    )
    stolen = mallory.frontend.register_input_file(url, "raw", b"", b"", bytes(16))  # registering only checks scheme
    mallory.frontend.assign_data_to_task(task_id, [DataMap("stolen", stolen)], [])
    mallory.frontend.invoke_task(task_id)
    assert _failure(mallory, task_id) == f"input stolen: download of {url} failed: {reason}{REFUSAL}"
    assert internal.connections == 0 and internal.requests == []


def test_an_output_url_cannot_write_to_an_internal_server(mallory: Session, internal: FixtureHTTPServer) -> None:
    url = internal.url("uploads/result.enc")
    function_id = mallory.frontend.register_function(
        "writer", "writes its output", "python", payload=WRITER, outputs=[FunctionOutput("result")]
    )
    task_id = mallory.frontend.create_task(
        function_id, {}, "python", outputs_ownership=[OwnerList("result", [mallory.user])]
    )
    result = mallory.frontend.register_output_file(url, "aes-gcm-128", os.urandom(16), os.urandom(12))
    mallory.frontend.assign_data_to_task(task_id, [], [DataMap("result", result)])
    mallory.frontend.invoke_task(task_id)
    reason = _failure(mallory, task_id)
    assert reason == f"output result: upload to {url} failed: 127.0.0.1 is a loopback address{REFUSAL}"
    assert internal.connections == 0 and internal.requests == []
