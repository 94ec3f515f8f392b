"""Two management replicas over one storage: nothing either decided is lost to the other.

Each replica has its own record locks, as separate processes do, so only the conditional
commits keep their read-modify-writes apart. Calls are started together and interleave at every
storage round trip.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from conftest import Actions, FakeStorage, Services, build_services
from policy_authorizer import PolicyAuthorizer, caller
from test_mgmt_tasks import ORG1, two_party

from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import ConflictError, FailedOperationError
from cloister.model.audit import AuditEntry, ChainHead, verify_chain
from cloister.model.functions import Function
from cloister.model.ids import ExternalId, usage_key
from cloister.model.roles import Role
from cloister.rpc.convert.functions import function_from_register_request
from cloister.services.management.audit import HEAD_KEY, entry_seq
from cloister.services.management.locks import CONFLICT_ATTEMPTS, retrying

V4 = bytes(10) + b"\xff\xff\x7f\x00\x00\x01"


@pytest.fixture
def pair(storage: FakeStorage, authorizer: PolicyAuthorizer) -> tuple[Services, Services]:
    return build_services(storage, authorizer), build_services(storage, authorizer)


def test_approvals_on_two_replicas_at_once_are_both_kept(pair, storage):
    one, two = pair

    async def go():
        act = Actions(one)
        _, tid = await two_party(one, act)
        await one.tasks.assign_data(caller("alice"), tid, [("in1", await act.register_input("alice"))], [])
        await two.tasks.assign_data(caller("bob"), tid, [], [("out", await act.register_output("bob"))])
        await asyncio.gather(one.tasks.approve(caller("alice"), tid), two.tasks.approve(caller("bob"), tid))
        stored = storage.json(tid)
        assert sorted(stored["approved_users"]["uids"]) == ["alice", "bob"]
        assert stored["status"] == "Approved"

    asyncio.run(go())


def test_a_quota_is_not_exceeded_by_invoking_on_two_replicas(pair, storage):
    one, two = pair

    async def go():
        act = Actions(one)
        fid = await act.register_function("fo", name="builtin-echo", usage_quota=1)
        tasks = [await one.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {}) for _ in range(2)]
        outcomes = await asyncio.gather(
            one.tasks.invoke(caller("alice"), tasks[0]),
            two.tasks.invoke(caller("alice"), tasks[1]),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(refused) == 1, outcomes
        assert isinstance(refused[0], FailedOperationError)
        assert refused[0].message == "function quota has been used up"
        assert storage.json(usage_key(ExternalId.parse(fid).uuid))["use_numbers"] == 1
        assert len(storage.queue_json(b"staged-task")) == 1

    asyncio.run(go())


def test_functions_registered_on_two_replicas_are_both_listed(pair, storage):
    one, two = pair

    async def go():
        registered = await asyncio.gather(
            *(
                replica_.functions.register(_function(owner="fo", allowed=("alice",)))
                for replica_ in (one, two, one, two)
            )
        )
        record = storage.json(await one.functions.user_record_key("fo"))
        assert sorted(record["registered_functions"]) == sorted(registered)
        assert sorted(storage.json(await one.functions.user_record_key("alice"))["allowed_functions"]) == sorted(
            registered
        )

    asyncio.run(go())


def test_audit_entries_saved_on_two_replicas_make_one_chain(pair, storage):
    one, two = pair

    async def go():
        batches = [
            [AuditEntry(n * 10 + i, V4, f"user{n}", f"batch {n} entry {i}", True) for i in range(3)] for n in range(8)
        ]
        await asyncio.gather(*((one if n % 2 else two).audit.save(batch) for n, batch in enumerate(batches)))
        keys = await storage.keys_with_prefix(b"audit")
        head = ChainHead.from_json(storage.json(HEAD_KEY))
        assert head.count == 24
        stored = [value.value for value in await storage.read(keys)]
        assert verify_chain([(entry_seq(k), raw) for k, raw in zip(keys, stored, strict=True)], head) == 24
        messages = sorted(json.loads(raw)["entry"]["message"] for raw in stored)
        assert messages == sorted(e.message for batch in batches for e in batch)
        # Either replica's index finds every entry, whichever replica stored it.
        for services in (one, two):
            found = await services.audit.query(caller("admin", Role.parse("PlatformAdmin")), "message:entry", 100)
            assert len(found) == 24

    asyncio.run(go())


def test_a_conflict_that_never_ends_reaches_the_caller():
    calls = 0

    async def always_conflicts() -> None:
        nonlocal calls
        calls += 1
        raise ConflictError()

    with pytest.raises(ConflictError):
        asyncio.run(retrying(always_conflicts))
    assert calls == CONFLICT_ATTEMPTS


def _function(owner: str, allowed: tuple[str, ...]) -> Function:
    request = fe_pb.RegisterFunctionRequest(
        name="builtin-echo", executor_type="builtin", public=False, user_allowlist=list(allowed), usage_quota=-1
    )
    return function_from_register_request(request, owner, uuid.uuid4())
