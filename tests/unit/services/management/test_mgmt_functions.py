"""Functions: registration, reads with redaction, listing, update, delete, disable (§6)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from policy_authorizer import caller

from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import AccessDeniedError, InvalidArgumentError, InvalidChoiceError, InvalidFunctionIdError
from cloister.model.functions import payload_sha256
from cloister.model.ids import ExternalId, payload_key, usage_key
from cloister.model.roles import Role
from cloister.rpc.convert.functions import (
    function_from_register_request,
    function_from_update_request,
    function_to_get_response,
)
from cloister.services.management import naming as naming_key
from cloister.services.management.functions import FunctionView
from cloister.storage.ops import Put

ADMIN = Role.parse("PlatformAdmin")
FO = Role.parse("FunctionOwner")
DO = Role.parse("DataOwner-org1")


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_register_stores_function_user_lists_and_zero_usage(services, act, storage):
    async def go():
        fid = await act.register_function("alice", public=False, user_allowlist=["bob", "carol", "bob"])
        uid = ExternalId.parse(fid, "function").uuid
        assert storage.json(fid)["owner"] == "alice"
        assert storage.json(await services.functions.user_record_key("alice"))["registered_functions"] == [fid]
        assert storage.json(await services.functions.user_record_key("bob"))["allowed_functions"] == [fid, fid]
        assert storage.json(await services.functions.user_record_key("carol"))["allowed_functions"] == [fid]
        assert storage.json(usage_key(uid)) == {"function_id": str(uid), "use_numbers": 0}
        naming, registration = storage.commits  # the naming key, made on first use; then one atomic commit
        assert {op.key for op in naming} == {naming_key.KEY_KEY}
        assert fid.encode() in {op.key for op in registration if isinstance(op, Put)}
        assert len(services.locks) == 0

    asyncio.run(go())


def test_get_function_views(services, act):
    async def go():
        public = await act.register_function("alice", payload=b"code", user_allowlist=["bob"])
        private = await act.register_function("alice", public=False, payload=b"code", user_allowlist=["bob"])
        f, view = await services.functions.get(caller("zed", DO), public)
        assert view is FunctionView.FULL and await services.functions.payload(f) == b"code"
        _, view = await services.functions.get(caller("alice", FO), private)
        assert view is FunctionView.FULL
        _, view = await services.functions.get(caller("root", ADMIN), private)
        assert view is FunctionView.FULL
        f, view = await services.functions.get(caller("bob", DO), private)
        assert view is FunctionView.REDACTED
        response = function_to_get_response(f, b"", redacted=True)
        assert response.payload == b"" and list(response.user_allowlist) == []
        assert response.executor_type == "builtin" and response.owner == "alice"
        with pytest.raises(AccessDeniedError):
            await services.functions.get(caller("zed", DO), private)
        with pytest.raises(InvalidFunctionIdError):
            await services.functions.get(caller("zed", DO), "function-nope")
        with pytest.raises(InvalidFunctionIdError):
            await services.functions.get(caller("zed", DO), private.replace("function", "task"))

    asyncio.run(go())


def test_usage_stats_rules(services, act):
    async def go():
        limited = await act.register_function("alice", usage_quota=3)
        assert await services.functions.usage_stats(caller("x", DO), limited) == (3, 0)
        unlimited = await act.register_function("alice", usage_quota=-5)
        assert await services.functions.usage_stats(caller("x", DO), unlimited) == (None, 0)
        private = await act.register_function("alice", public=False, user_allowlist=["bob"])
        assert await services.functions.usage_stats(caller("bob", DO), private) == (None, 0)
        assert await services.functions.usage_stats(caller("root", ADMIN), private) == (None, 0)
        with pytest.raises(AccessDeniedError):  # [QUIRK] not even the owner
            await services.functions.usage_stats(caller("alice", FO), private)

    asyncio.run(go())


def test_list_functions(services, act, storage):
    async def go():
        f1 = await act.register_function("alice")
        f2 = await act.register_function("bob", user_allowlist=["alice"])
        await act.register_input("alice")  # an unrelated key must not show up
        assert await services.functions.list_functions(caller("alice", FO), "alice") == ([f1], [f2])
        with pytest.raises(AccessDeniedError):
            await services.functions.list_functions(caller("bob", FO), "alice")
        registered, allowed = await services.functions.list_functions(caller("root", ADMIN), "alice")
        assert registered == [f1] and sorted(allowed) == sorted([f1, f2])
        assert await services.functions.list_functions(caller("root", ADMIN), "nobody") == ([], [])

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records
def test_a_payload_lives_in_its_own_record_replaced_and_deleted_with_its_function(services, act, storage):
    def payload_keys() -> list[bytes]:
        return sorted(k for k in storage.data if k.startswith(b"payload-"))

    async def go():
        fid = await act.register_function("alice", name="f", executor_type="python", payload=b"first")
        uid = ExternalId.parse(fid, "function").uuid
        assert payload_keys() == [payload_key(uid, payload_sha256(b"first"))]
        assert storage.json(fid)["payload_sha256"] == payload_sha256(b"first") and "payload" not in storage.json(fid)
        request = fe_pb.UpdateFunctionRequest(function_id=fid, name="f", executor_type="python", payload=b"second")
        await services.functions.update(caller("alice"), function_from_update_request(request, "alice"))
        assert payload_keys() == [payload_key(uid, payload_sha256(b"second"))]
        function, _ = await services.functions.get(caller("alice"), fid)
        assert await services.functions.payload(function) == b"second"
        # An earlier version's record, payload inside: read as it is, moved out at its next update.
        legacy = {**storage.json(fid), "payload": list(b"old")}
        del legacy["payload_sha256"]
        await storage.commit([Put(fid.encode(), json.dumps(legacy).encode())])
        function, _ = await services.functions.get(caller("alice"), fid)
        assert await services.functions.payload(function) == b"old"
        await services.functions.update(caller("alice"), function_from_update_request(request, "alice"))
        assert "payload" not in storage.json(fid)
        await services.functions.delete(caller("alice"), fid)
        assert payload_keys() == []
        builtin = await act.register_function("alice", name="builtin-echo")
        assert payload_keys() == []  # a built-in has no payload to store
        function, _ = await services.functions.get(caller("alice"), builtin)
        assert await services.functions.payload(function) == b""

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_update_function_replaces_but_keeps_lists(services, act, storage):
    async def go():
        fid = await act.register_function("alice", user_allowlist=["bob"])
        request = fe_pb.UpdateFunctionRequest(
            function_id=fid, name="new", executor_type="python", payload=b"x", user_allowlist=["carol"], usage_quota=2
        )
        with pytest.raises(AccessDeniedError):
            await services.functions.update(caller("root"), function_from_update_request(request, "root"))
        assert await services.functions.update(caller("alice"), function_from_update_request(request, "alice")) == fid
        stored = storage.json(fid)
        assert stored["name"] == "new" and stored["executor_type"] == "Python" and stored["usage_quota"] == 2
        assert stored["user_allowlist"] == ["carol"]
        assert await services.functions.user_record_key("carol") not in storage.data  # [QUIRK] lists not refreshed
        assert storage.json(await services.functions.user_record_key("bob"))["allowed_functions"] == [fid]
        with pytest.raises(InvalidFunctionIdError):
            function_from_update_request(fe_pb.UpdateFunctionRequest(function_id="bad"), "alice")
        missing = fe_pb.UpdateFunctionRequest(
            function_id=fid.replace(fid[-4:], "0000"), name="builtin-echo", executor_type="builtin"
        )
        with pytest.raises(InvalidFunctionIdError):
            await services.functions.update(caller("alice"), function_from_update_request(missing, "alice"))

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_delete_is_owner_only(services, act, storage):
    async def go():
        fid = await act.register_function("alice")
        with pytest.raises(AccessDeniedError):
            await services.functions.delete(caller("root"), fid)  # admins are not special
        await services.functions.delete(caller("alice"), fid)
        assert fid.encode() not in storage.data
        assert storage.json(await services.functions.user_record_key("alice"))["registered_functions"] == [fid]
        with pytest.raises(InvalidFunctionIdError):
            await services.functions.delete(caller("alice"), fid)

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_disable_unlists_and_clears_allowlist(services, act, storage):
    async def go():
        fid = await act.register_function("alice", public=True, user_allowlist=["bob", "ghost"])
        del storage.data[await services.functions.user_record_key("ghost")]  # missing records are ignored
        with pytest.raises(AccessDeniedError):
            await services.functions.disable(caller("bob", DO), fid)
        await services.functions.disable(caller("root", ADMIN), fid)
        assert storage.json(fid)["user_allowlist"] == []
        assert storage.json(await services.functions.user_record_key("alice"))["registered_functions"] == []
        assert storage.json(await services.functions.user_record_key("bob"))["allowed_functions"] == []
        assert await services.functions.user_record_key("ghost") not in storage.data
        _, view = await services.functions.get(caller("zed", DO), fid)  # [QUIRK] public stays usable
        assert view is FunctionView.FULL
        assert len(services.locks) == 0

    asyncio.run(go())


def test_register_request_validation():
    def build(**fields):
        fields.setdefault("executor_type", "builtin")
        return function_from_register_request(
            fe_pb.RegisterFunctionRequest(**fields), "alice", ExternalId.new("f").uuid
        )

    with pytest.raises(InvalidChoiceError, match=r"^executor_type 'java' is not one of: builtin, python, wasm"):
        build(executor_type="java")
    assert build(executor_type="wasm").function.executor_type == "wamr"
    assert build(executor_type="mesapy").function.executor_type == "python"
    with pytest.raises(InvalidArgumentError, match=r"^too many function arguments: 1001, over the limit of 1000$"):
        build(arguments=[fe_pb.FunctionArgument(key=str(i)) for i in range(1001)])
    with pytest.raises(InvalidArgumentError, match=r"^function name is 5000 characters long, over the limit of 1024$"):
        build(name="x" * 5000)
    large = build(payload=bytes(8 * 1024 * 1024))  # only the message size limits a payload now
    assert large.payload == bytes(8 * 1024 * 1024) and large.function.payload_sha256 == payload_sha256(large.payload)
    with pytest.raises(InvalidArgumentError, match=r"^too many user_allowlist: 1001"):
        build(user_allowlist=["u"] * 1001)
    with pytest.raises(InvalidArgumentError, match=r"^arguments: 'a' is declared twice$"):
        build(arguments=[fe_pb.FunctionArgument(key="a"), fe_pb.FunctionArgument(key="a")])
    with pytest.raises(InvalidArgumentError, match=r"^function inputs: 'in' is declared twice$"):
        build(inputs=[fe_pb.FunctionInput(name="in"), fe_pb.FunctionInput(name="in", optional=True)])
    assert build(usage_quota=0).function.usage_quota == 0
    assert build(usage_quota=-1).function.usage_quota is None


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_a_builtin_function_must_name_a_built_in(services, act, storage):
    """Refused when registered or updated, listing the built-ins, instead of failing each task."""

    async def go():
        commits = len(storage.commits)
        with pytest.raises(InvalidChoiceError) as refused:
            await act.register_function("alice", name="builtin-ecko")
        message = refused.value.message
        assert message.startswith("name 'builtin-ecko' is not one of: builtin-echo, builtin-face-detection, ")
        assert "builtin_online_decrypt" in message and message.endswith("the built-in its name selects")
        assert len(storage.commits) == commits
        fid = await act.register_function("alice", name="builtin-echo")
        update = fe_pb.UpdateFunctionRequest(function_id=fid, name="echo", executor_type="builtin")
        with pytest.raises(InvalidChoiceError, match="name 'echo' is not one of"):
            await services.functions.update(caller("alice"), function_from_update_request(update, "alice"))
        # Other executors' names are free text, as in Teaclave.
        await act.register_function("alice", name="echo", executor_type="python", payload=b"def entrypoint(a): 1")

    asyncio.run(go())


def test_function_lists_stored_under_names_anyone_can_compute_are_renamed(services, storage):
    """Earlier versions keyed them ``user-<uuid v5 of the id>``: a guess at an id could be checked."""

    async def go():
        def legacy_key(user_id: str) -> bytes:
            return f"user-{uuid.uuid5(uuid.UUID('6ba7b810-9dad-11d1-80b4-00c04fd430c8'), user_id)}".encode()

        alice = {"id": "alice", "registered_functions": ["function-1"], "allowed_functions": []}
        bob = {"id": "bob", "registered_functions": [], "allowed_functions": ["function-2"]}
        await storage.commit([Put(legacy_key(u["id"]), json.dumps(u).encode()) for u in (alice, bob)])
        assert await services.functions.upgrade_user_records() == 2
        assert await storage.keys_with_prefix(b"user") == []
        for record in (alice, bob):
            key = await services.functions.user_record_key(record["id"])
            assert key.startswith(b"functions-of-") and record["id"].encode() not in key
            assert storage.json(key) == record
        registered, _ = await services.functions.list_functions(caller("alice"), "alice")
        assert registered == ["function-1"]
        assert await services.functions.upgrade_user_records() == 0
        # A list begun under the keyed name while the rename had not reached it yet is merged.
        carol = {"id": "carol", "registered_functions": ["function-3"], "allowed_functions": []}
        newer = {"id": "carol", "registered_functions": ["function-4"], "allowed_functions": []}
        carol_key = await services.functions.user_record_key("carol")
        await storage.commit(
            [Put(legacy_key("carol"), json.dumps(carol).encode()), Put(carol_key, json.dumps(newer).encode())]
        )
        assert await services.functions.upgrade_user_records() == 1
        assert storage.json(carol_key)["registered_functions"] == ["function-4", "function-3"]

    asyncio.run(go())
