"""No deadlock: under the packaged policy, and with the edits docs/access-control.md shows, every
participant a task needs can take each step the workflow asks of them.

Each step passes both layers a frontend call passes: the role -> API rules (``policy.csv``) and
management's object decisions (``object_policy.csv``), both evaluated by the real policy.
tests/e2e/test_multiparty.py runs the same workflow through the real services.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import FakeStorage, Services, build_services
from policy_authorizer import PolicyAuthorizer, caller

from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import AccessDeniedError
from cloister.model.access import Subject
from cloister.model.files import FileCrypto, InputFile, OutputFile
from cloister.model.roles import Role
from cloister.model.tasks import TaskStatus
from cloister.rpc.convert.functions import function_from_register_request
from cloister.services.access_control.policy import PACKAGED_POLICY_DIR, POLICY_FILES, AccessPolicy

T = TypeVar("T")

# The edit docs/access-control.md shows for letting function owners run tasks of their own functions.
FUNCTION_OWNERS_CREATE = (
    "p, rule_function_owner, create_task\np, rule_function_owner, invoke_task\np, rule_function_owner, cancel_task\n",
    'p, task.create, r.sub.role == "FunctionOwner" && r.sub.id == r.obj.owner\n',
)
DATA_OWNER_ROLES = [
    "DataOwner-orgB",
    "DataOwnerManager-orgB",
    "FunctionOwner",
    "FunctionOwner-orgF",
    "FunctionOwnerManager-orgF",
    "PlatformAdmin",
]
FUNCTION_OWNER_ROLES = ["FunctionOwner", "FunctionOwnerManager-orgF", "PlatformAdmin"]
KEY = bytes(16)


@dataclass
class Party:
    """A user calling the frontend: the role -> API rule first, then management's own decisions."""

    user_id: str
    role: Role
    policy: AccessPolicy

    @property
    def subject(self) -> Subject:
        return caller(self.user_id, self.role)

    async def call(self, api: str, step: Awaitable[T]) -> T:
        if not self.policy.allows_api(self.role.policy_subject, api):
            step.close()  # type: ignore[attr-defined]
            raise AccessDeniedError(f"{self.role} may not call {api}")
        return await step


def _services(policy: AccessPolicy) -> Services:
    return build_services(FakeStorage(), PolicyAuthorizer(policy))


async def _run_a_task(
    policy: AccessPolicy, creator_role: str, owner_role: str, data_role: str, *, own_function: bool = False
) -> None:
    """The function owner's private function, the creator's task, an input owner and an output
    owner: every step each of them must take, then a second task its creator cancels."""
    s = _services(policy)
    owner = Party("fowner", Role.parse(owner_role), policy)
    creator = owner if own_function else Party("creator", Role.parse(creator_role), policy)
    provider = Party("provider", Role.parse(data_role), policy)
    receiver = Party("receiver", Role.parse(data_role), policy)

    request = fe_pb.RegisterFunctionRequest(
        name="builtin-echo",
        executor_type="builtin",
        public=False,
        arguments=[fe_pb.FunctionArgument(key="message", allow_overwrite=True)],
        inputs=[fe_pb.FunctionInput(name="in")],
        outputs=[fe_pb.FunctionOutput(name="out")],
        user_allowlist=[creator.role.attribute],
        usage_quota=-1,
    )
    function = function_from_register_request(request, owner.user_id, uuid.uuid4())
    function_id = await owner.call("register_function", s.functions.register(function))

    async def create() -> str:
        return await creator.call(
            "create_task",
            s.tasks.create(
                creator.subject,
                function_id,
                '{"message": "hi"}',
                "builtin",
                {"in": frozenset({provider.user_id})},
                {"out": frozenset({receiver.user_id})},
            ),
        )

    task_id = await create()
    participants = {p.user_id: p for p in (creator, owner, provider, receiver)}
    assert (await s.tasks.get(creator.subject, task_id)).participants == set(participants)

    file = InputFile(
        "https://b.example/in", KEY, FileCrypto("teaclave-file-128", KEY), frozenset({"provider"}), uuid.uuid4()
    )
    input_id = await provider.call("register_input_file", s.files.register(provider.subject, file))
    await provider.call("assign_data", s.tasks.assign_data(provider.subject, task_id, [("in", input_id)], []))
    output = OutputFile(
        "https://b.example/out", None, FileCrypto("teaclave-file-128", KEY), frozenset({"receiver"}), uuid.uuid4()
    )
    output_id = await receiver.call("register_output_file", s.files.register(receiver.subject, output))
    await receiver.call("assign_data", s.tasks.assign_data(receiver.subject, task_id, [], [("out", output_id)]))

    for party in participants.values():
        inbox, _ = await party.call(
            "list_tasks",
            s.tasks.list_tasks(party.subject, statuses=frozenset(), awaiting_approval=True, page_size=10, after=None),
        )
        assert [task.external_id for _, task in inbox] == [task_id], party
        await party.call("get_task", s.tasks.get(party.subject, task_id))
        await party.call("approve_task", s.tasks.approve(party.subject, task_id))

    await creator.call("invoke_task", s.tasks.invoke(creator.subject, task_id))
    for party in participants.values():
        assert (await party.call("get_task", s.tasks.get(party.subject, task_id))).status is TaskStatus.STAGED
    await receiver.call("get_output_file", s.files.get_output(receiver.subject, output_id))

    second = await create()
    await creator.call("cancel_task", s.tasks.cancel(creator.subject, second))
    assert (await s.tasks.get(creator.subject, second)).status is TaskStatus.CANCELED


@pytest.fixture(scope="module")
def packaged() -> AccessPolicy:
    return AccessPolicy()


@pytest.mark.parametrize("owner_role", FUNCTION_OWNER_ROLES)
@pytest.mark.parametrize("data_role", DATA_OWNER_ROLES)
@pytest.mark.parametrize("creator_role", ["DataOwner-orgA", "DataOwnerManager-orgA"])
def test_every_participant_can_take_their_steps(
    packaged: AccessPolicy, creator_role: str, owner_role: str, data_role: str
) -> None:
    asyncio.run(_run_a_task(packaged, creator_role, owner_role, data_role))


def test_a_function_owner_could_not_approve_in_teaclave(packaged: AccessPolicy) -> None:
    """What the added role -> API rows are for: Teaclave's table denied a FunctionOwner every task API."""
    teaclave = [
        line for line in (PACKAGED_POLICY_DIR / "policy.csv").read_text().splitlines() if "participant" not in line
    ]
    assert not any("FunctionOwner" in line and "task" in line for line in teaclave)
    assert packaged.allows_api("FunctionOwner", "approve_task") and packaged.allows_api("FunctionOwner", "get_task")
    # The participant rows open no door the object rules do not guard: creating and running stay the data owners'.
    for api in ("create_task", "invoke_task", "cancel_task", "query_audit_logs"):
        assert not packaged.allows_api("FunctionOwner", api)


@pytest.fixture(scope="module")
def function_owners_create(tmp_path_factory: pytest.TempPathFactory) -> AccessPolicy:
    directory = tmp_path_factory.mktemp("policy")
    for name in POLICY_FILES:
        shutil.copy(PACKAGED_POLICY_DIR / name, directory / name)
    for name, rows in zip(("policy.csv", "object_policy.csv"), FUNCTION_OWNERS_CREATE, strict=True):
        with (directory / name).open("a") as f:
            f.write(rows)
    return AccessPolicy(directory)


@pytest.mark.parametrize("data_role", DATA_OWNER_ROLES)
def test_with_the_documented_edit_a_function_owner_runs_tasks_of_their_own_function(
    function_owners_create: AccessPolicy, data_role: str
) -> None:
    asyncio.run(_run_a_task(function_owners_create, "", "FunctionOwner", data_role, own_function=True))


def test_the_documented_edit_is_the_one_in_the_docs() -> None:
    docs = (Path(__file__).resolve().parents[4] / "docs" / "access-control.md").read_text()
    for rows in FUNCTION_OWNERS_CREATE:
        assert rows.strip() in docs
