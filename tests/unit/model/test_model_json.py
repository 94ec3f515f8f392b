"""Persisted records round-trip and keep the reference's JSON layout (§3.2)."""

from __future__ import annotations

import json
import uuid

import pytest

from cloister.errors import InvalidArgumentError
from cloister.model.files import FileCrypto, InputFile
from cloister.model.ids import ExternalId
from cloister.model.roles import Role, RoleKind
from cloister.model.tasks import StagedInput, StagedOutput, StagedTask, TaskOutputs, TaskResult, TaskState, TaskStatus


def test_external_ids() -> None:
    parsed = ExternalId.parse("task-9D6F0000-0000-0000-0000-000000000001", "task")
    assert str(parsed) == "task-9d6f0000-0000-0000-0000-000000000001"
    for bad in ("task", "task-", "task-xyz", "function-9d6f0000-0000-0000-0000-000000000001"):
        with pytest.raises(InvalidArgumentError):
            ExternalId.parse(bad, "task")


def test_roles_three_spellings() -> None:
    role = Role.from_request("DataOwner", "org-1")
    assert str(role) == "DataOwner-org-1"
    assert Role.parse("DataOwner-org-1") == role
    assert role.debug_form() == 'DataOwner("org-1")'
    assert role.policy_subject == "DataOwner"
    assert Role.parse("DataOwnerManager-x").kind is RoleKind.DATA_OWNER_MANAGER
    assert Role.from_request("Root", "").kind is RoleKind.INVALID
    assert Role.from_json(role.to_json()) == role


@pytest.mark.parametrize(
    ("role", "text", "debug", "json_form"),
    [
        (Role(RoleKind.PLATFORM_ADMIN), "PlatformAdmin", "PlatformAdmin", "PlatformAdmin"),
        (Role(RoleKind.FUNCTION_OWNER), "FunctionOwner", "FunctionOwner", "FunctionOwner"),
        (Role(RoleKind.FUNCTION_OWNER, "org"), "FunctionOwner-org", 'FunctionOwner("org")', {"FunctionOwner": "org"}),
        (
            Role(RoleKind.FUNCTION_OWNER_MANAGER, "org"),
            "FunctionOwnerManager-org",
            'FunctionOwnerManager("org")',
            {"FunctionOwnerManager": "org"},
        ),
        (Role(RoleKind.DATA_OWNER, ""), "DataOwner-", 'DataOwner("")', {"DataOwner": ""}),
        (Role(RoleKind.DATA_OWNER_MANAGER, "a-b"), "DataOwnerManager-a-b", 'DataOwnerManager("a-b")', None),
    ],
)
def test_every_role_round_trips_through_its_spellings(role: Role, text: str, debug: str, json_form: object) -> None:
    """A FunctionOwner without an organisation is spelt as in Teaclave; every other role keeps its attribute."""
    assert str(role) == text and Role.parse(text) == role
    assert role.debug_form() == debug
    assert Role.from_json(role.to_json()) == role
    if json_form is not None:
        assert role.to_json() == json_form
    assert role.policy_subject == role.kind.value
    assert Role.from_request(role.kind.value, role.attribute) == role


def test_platform_admins_have_no_organisation_and_unknown_kinds_are_invalid() -> None:
    assert Role.from_request("PlatformAdmin", "org") == Role(RoleKind.PLATFORM_ADMIN)
    for text in ("PlatformAdmin-org", "Invalid-x", "Root-x", "FunctionOwnerX", "-x", ""):
        assert Role.parse(text).kind is RoleKind.INVALID


def test_crypto_repr_hides_the_key() -> None:
    assert "key" not in repr(FileCrypto.from_request("aes-gcm-256", bytes(32), bytes(12))).lower().replace("schema", "")


def test_staged_task_json_matches_reference_layout() -> None:
    crypto = FileCrypto.from_request("teaclave-file-128", bytes(16), b"")
    staged = StagedTask(
        task_id=uuid.UUID(int=1),
        function_id=uuid.UUID(int=2),
        user_id="frontend_user",
        executor="builtin",
        executor_type="builtin",
        function_name="builtin-gbdt-train",
        function_arguments={"b": 1, "a": "x"},
        function_payload=b"",
        input_data={"training_data": StagedInput("http://h/train.enc", bytes(range(16)), crypto)},
        output_data={"trained_model": StagedOutput("http://h/model.enc", crypto)},
    )
    data = staged.to_json()
    assert list(data) == [
        "task_id", "function_id", "user_id", "executor", "executor_type", "function_name",
        "function_arguments", "function_payload", "input_data", "output_data",
    ]  # fmt: skip
    assert data["executor"] == "Builtin"
    assert data["input_data"]["inner"]["training_data"]["crypto_info"] == {"TeaclaveFile128": {"key": [0] * 16}}
    assert list(data["function_arguments"]["inner"]) == ["a", "b"]
    assert StagedTask.from_json(json.loads(json.dumps(data))) == staged


def test_task_state_round_trip() -> None:
    crypto = FileCrypto.from_request("aes-gcm-128", bytes(16), bytes(12))
    input_file = InputFile("http://h/a", bytes(16), crypto, frozenset({"u1"}), uuid.UUID(int=5))
    task = TaskState(
        task_id=uuid.UUID(int=3),
        creator="u1",
        function_id=ExternalId("function", uuid.UUID(int=4)),
        function_arguments={"message": "hi"},
        executor="mesapy",
        inputs_ownership={"in": frozenset({"u1"})},
        outputs_ownership={},
        function_owner="u2",
        participants=frozenset({"u1", "u2"}),
        assigned_inputs={"in": input_file},
        result=TaskResult.ok(TaskOutputs(b"rv", {"out": bytes(16)}, ("line",))),
        status=TaskStatus.FINISHED,
    )
    data = json.loads(json.dumps(task.to_json()))
    assert data["executor"] == "MesaPy" and data["status"] == "Finished"
    assert TaskState.from_json(data) == task
    assert TaskResult.from_json("NotReady") == TaskResult()
    assert TaskResult.from_json({"Err": {"reason": "boom"}}).failure == "boom"
