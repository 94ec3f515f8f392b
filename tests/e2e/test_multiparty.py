"""Several parties and a private function: nothing runs until every participant has approved, and
every participant, the function's owner included, can take the steps the task needs of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import admin, login
from http_fixture_server import FixtureHTTPServer

from cloister import Client, Credentials, Crypto, TaskStatus, Trust
from cloister.crypto.files import decrypt_file
from cloister.errors import AccessDeniedError, FailedOperationError
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform

MODEL = b"""
def entrypoint(argv):
    with teaclave_open("model", "wb") as f:
        f.write(b"trained on " + argv[1].encode())
    return "trained"
"""


def test_a_function_owners_private_function_runs_once_its_owner_approves(platform: RunningPlatform) -> None:
    """Teaclave's default rules let a FunctionOwner call no task API, so its private function,
    whose tasks its owner must approve, could never run."""
    root = admin(platform)
    root.auth.user_register("alice", "alice-password", "FunctionOwner", "")
    root.auth.user_register("bob", "bob-password", "DataOwner", "bank_b")
    alice = login(platform, "alice", "alice-password")
    bob = login(platform, "bob", "bob-password")

    function_id = alice.frontend.register_function(
        "builtin-echo",
        "alice's private echo",
        "builtin",
        public=False,
        arguments=[FunctionArgument("message")],
        user_allowlist=["bank_b"],
    )
    task_id = bob.frontend.create_task(function_id, {"message": "agreed"}, "builtin")
    assert sorted(bob.frontend.get_task(task_id)["participants"]) == ["alice", "bob"]
    assert alice.frontend.get_task(task_id)["function_owner"] == "alice"  # a participant reads the task

    with pytest.raises(FailedOperationError, match="failed to invoke task: not approved by alice, bob"):
        bob.frontend.invoke_task(task_id)
    bob.frontend.approve_task(task_id)
    with pytest.raises(FailedOperationError, match=r"failed to invoke task: not approved by alice$"):
        bob.frontend.invoke_task(task_id)
    with pytest.raises(AccessDeniedError):
        alice.frontend.invoke_task(task_id)  # only the creator invokes (and a FunctionOwner creates none)
    alice.frontend.approve_task(task_id)
    assert alice.frontend.get_task(task_id)["approved_users"] == ["alice", "bob"]
    bob.frontend.invoke_task(task_id)

    assert bob.frontend.get_task_result(task_id) == b"agreed"
    assert alice.frontend.get_task(task_id)["status"] == TaskStatus.FINISHED
    assert alice.frontend.get_task_result(task_id) == b"agreed"


def test_user_outside_allowlist_cannot_use_private_function(platform: RunningPlatform) -> None:
    root = admin(platform)
    root.auth.user_register("carol", "carol-password", "DataOwner", "bank_c")
    carol = login(platform, "carol", "carol-password")
    function_id = root.frontend.register_function(
        "builtin-echo", "private", "builtin", public=False, arguments=[FunctionArgument("message")]
    )
    with pytest.raises(AccessDeniedError, match="permission denied"):
        carol.frontend.create_task(function_id, {"message": "x"}, "builtin")


def _connect(platform: RunningPlatform, user: str, password: str) -> Client:
    return Client.connect(
        platform.frontend_address,
        trust=Trust.from_files(platform.as_root_ca, platform.enclave_info),
        credentials=Credentials(user, password),
        authentication=platform.authentication_address,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FixtureHTTPServer, Path]]:
    directory = tmp_path / "served"
    directory.mkdir()
    with FixtureHTTPServer(directory) as server:
        yield server, directory


def test_a_function_owner_receiving_an_output_takes_every_step_of_a_data_owner(
    platform: RunningPlatform, served: tuple[FixtureHTTPServer, Path], tmp_path: Path
) -> None:
    """The function's owner is also the owner its creator names for the output: it registers and
    assigns the output, finds the task in its inbox, approves, and reads the result."""
    server, directory = served
    with _connect(platform, platform.admin_user, platform.admin_password) as root:
        root.users.register("modeller", "modeller-password", "FunctionOwner")
        root.users.register("hospital", "hospital-password", "DataOwner", "hospitals")
    with (
        _connect(platform, "modeller", "modeller-password") as modeller,
        _connect(platform, "hospital", "hospital-password") as hospital,
    ):
        function = modeller.functions.register(
            "trainer",
            executor="python",
            payload=MODEL,
            arguments=["cohort"],
            outputs=["model"],
            public=False,
            allowed_users=["hospitals"],
        )
        task = hospital.tasks.create(
            function.id, {"cohort": "2024"}, executor="python", outputs_ownership={"model": "modeller"}
        )
        assert task.describe().participants == {"hospital", "modeller"}

        key = Crypto.aes_gcm_128(os.urandom(16))
        output = modeller.files.register_output(server.url("model.enc"), key)
        mine = modeller.tasks.get(task.id)
        mine.assign(outputs={"model": output})
        for party in (modeller, hospital):
            assert [t.id for t in party.tasks.list(awaiting_my_approval=True)] == [task.id]
            party.tasks.get(task.id).approve()
        task.invoke()

        result = task.result(timeout=120)
        assert result.return_value == b"trained"
        assert mine.status() is TaskStatus.FINISHED
        assert mine.result().output_tags["model"] == output.get().cmac
        decrypt_file(key, directory / "model.enc", tmp_path / "model.txt")
        assert (tmp_path / "model.txt").read_bytes() == b"trained on 2024"
