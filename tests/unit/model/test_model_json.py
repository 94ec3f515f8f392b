"""Persisted records round-trip and keep the reference's JSON layout (§3.2)."""

from __future__ import annotations

import json
import uuid

import pytest

from cloister.errors import InvalidArgumentError
from cloister.model.files import FileCrypto, InputFile
from cloister.model.functions import EMPTY_PAYLOAD_SHA256, Function, payload_sha256
from cloister.model.ids import ExternalId
from cloister.model.roles import Role, RoleKind
from cloister.model.tasks import (
    StagedElement,
    StagedInput,
    StagedOutput,
    StagedTask,
    TaskOutputs,
    TaskResult,
    TaskState,
    TaskStatus,
)


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


def _function_record(**extra: object) -> dict:
    return {
        "id": str(uuid.UUID(int=5)),
        "name": "f",
        "description": "",
        "public": True,
        "executor_type": "Python",
        "arguments": [],
        "inputs": [],
        "outputs": [],
        "owner": "alice",
        "user_allowlist": [],
        "usage_quota": None,
        **extra,
    }


def test_a_function_record_names_its_payload_and_an_older_record_keeps_its_own() -> None:
    digest = payload_sha256(b"code")
    current = Function.from_json(_function_record(payload_sha256=digest))
    assert current.payload_sha256 == digest and current.inline_payload is None
    assert "payload" not in current.to_json() and Function.from_json(current.to_json()) == current
    # An earlier version's record kept the payload inside, as a JSON list: it keeps it, and a
    # task of it is staged carrying it, as before.
    older = Function.from_json(_function_record(payload=list(b"code")))
    assert older.payload_sha256 == digest and older.inline_payload == b"code"
    assert older.to_json()["payload"] == list(b"code")
    for bad in ("", "AB" * 32, "../" * 22, digest[:-1], 7):
        with pytest.raises(ValueError):
            Function.from_json(_function_record(payload_sha256=bad))


def test_a_staged_element_names_a_payload_it_does_not_carry() -> None:
    task = StagedTask(uuid.uuid4(), uuid.uuid4(), "u", "mesapy", "python", "f", {}, b"code", {}, {})
    assert task.function_payload_sha256 == payload_sha256(b"code") and not task.payload_missing
    element = StagedElement(task.without_payload()).to_json()
    assert element["staged_task"]["function_payload"] == [] and element["payload_sha256"] == payload_sha256(b"code")
    back = StagedElement.from_json(element).staged
    assert back.payload_missing and back.function_payload_sha256 == payload_sha256(b"code")
    assert "payload_sha256" not in StagedElement(task).to_json()  # carried: nothing to name
    with pytest.raises(ValueError):
        StagedElement.from_json({**element, "payload_sha256": "../../etc"})
    builtin = StagedTask(uuid.uuid4(), uuid.uuid4(), "u", "builtin", "builtin", "builtin-echo", {}, b"", {}, {})
    assert builtin.function_payload_sha256 == EMPTY_PAYLOAD_SHA256 and not builtin.payload_missing
