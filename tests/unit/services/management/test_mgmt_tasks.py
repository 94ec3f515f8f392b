"""Tasks: creation rules, data assignment, approval, invocation, cancellation, waiting (§8)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from policy_authorizer import caller

from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import (
    AccessDeniedError,
    FailedOperationError,
    InvalidArgumentError,
    InvalidDataIdError,
    InvalidFunctionIdError,
    InvalidTaskIdError,
)
from cloister.model.functions import payload_sha256
from cloister.model.ids import ExternalId, usage_key
from cloister.model.roles import Role
from cloister.storage.ops import Delete

ADMIN = Role.parse("PlatformAdmin")
FO = Role.parse("FunctionOwner")
ORG1 = Role.parse("DataOwner-org1")
ORG2 = Role.parse("DataOwnerManager-org2")

ARGS = [
    fe_pb.FunctionArgument(key="a", default_value="1", allow_overwrite=True),
    fe_pb.FunctionArgument(key="b", default_value="2", allow_overwrite=False),
]
INPUTS = [fe_pb.FunctionInput(name="in1"), fe_pb.FunctionInput(name="opt", optional=True)]
OUTPUTS = [fe_pb.FunctionOutput(name="out")]


def owners(**names: list[str]) -> dict[str, frozenset[str]]:
    return {k: frozenset(v) for k, v in names.items()}


async def two_party(services, act, **function_fields):
    """A function with inputs in1/opt and output out; alice owns in1, bob owns out."""
    fields = {"arguments": ARGS, "inputs": INPUTS, "outputs": OUTPUTS, **function_fields}
    fid = await act.register_function("fo", **fields)
    tid = await services.tasks.create(
        caller("alice", ORG1), fid, '{"a": 5}', "builtin", owners(in1=["alice"]), owners(out=["bob"])
    )
    return fid, tid


def test_create_task_arguments_and_defaults(services, act, storage):
    async def go():
        fid, tid = await two_party(services, act)
        stored = storage.json(tid)
        assert stored["function_arguments"] == {"inner": {"a": 5, "b": "2"}}
        assert stored["status"] == "Created" and stored["executor"] == "Builtin"
        assert stored["function_id"] == ExternalId.parse(fid).to_json()
        # An overwritable argument with a default may be left out (the reference refused it).
        tid = await services.tasks.create(
            caller("alice", ORG1), fid, "{}", "builtin", owners(in1=["alice"]), owners(out=["bob"])
        )
        assert storage.json(tid)["function_arguments"] == {"inner": {"a": "1", "b": "2"}}
        for bad, message in (
            (
                '{"a": 1, "b": 2}',
                "invalid task: function_arguments sets 'b', which the function fixes (allow_overwrite is false)",
            ),
            ('{"a": 1, "c": 1}', "invalid task: function_arguments has 'c', which the function does not declare"),
        ):
            with pytest.raises(InvalidArgumentError) as refused:
                await services.tasks.create(
                    caller("alice", ORG1), fid, bad, "builtin", owners(in1=["a"]), owners(out=["b"])
                )
            assert refused.value.message == message + "; its arguments a task sets: 'a'"

    asyncio.run(go())


def test_an_argument_without_default_must_be_given(services, act, storage):
    async def go():
        arguments = [fe_pb.FunctionArgument(key=k, allow_overwrite=True) for k in ("message", "save_log")]
        fid = await act.register_function("fo", arguments=arguments)

        async def create(arguments_json):
            return await services.tasks.create(caller("alice", ORG1), fid, arguments_json, "builtin", {}, {})

        with pytest.raises(InvalidArgumentError) as refused:
            await create("{}")
        assert refused.value.message == (
            "invalid task: function_arguments lacks 'message', 'save_log', which the function needs (no default)"
        )
        with pytest.raises(InvalidArgumentError) as refused:
            await create('{"mesage": "s3cret", "save_log": "true"}')
        assert refused.value.message == (
            "invalid task: function_arguments has 'mesage', which the function does not declare; "
            "its arguments a task sets: 'message', 'save_log'"
        )
        assert "s3cret" not in refused.value.message  # values are never shown: they may be secrets
        # A Teaclave client sends every overwritable argument, as before.
        tid = await create('{"message": "hi", "save_log": "true"}')
        assert storage.json(tid)["function_arguments"] == {"inner": {"message": "hi", "save_log": "true"}}

    asyncio.run(go())


def test_create_task_request_parsing(services, act):
    async def go():
        fid = await act.register_function("fo")

        async def create(arguments="{}", executor="builtin"):
            return await services.tasks.create(caller("alice", ORG1), fid, arguments, executor, {}, {})

        for bad in ("[]", '"x"', "", "{", '{"a": NaN}', "[" * 5000 + "]" * 5000, '{"a": 1e999}'):
            with pytest.raises(
                InvalidArgumentError, match=r"^function_arguments (is not valid JSON|must be a JSON object)"
            ):
                await create(arguments=bad)
        with pytest.raises(
            InvalidArgumentError, match=r"^function_arguments is 3145737 bytes, over the limit of 2097152"
        ):
            await create(arguments='{"a": "' + "x" * (3 * 1024 * 1024) + '"}')
        with pytest.raises(InvalidArgumentError, match=r"^executor 'java' is not one of: builtin, python, wasm"):
            await create(executor="java")
        with pytest.raises(
            InvalidArgumentError, match=r"^invalid task: function_arguments has 'x'.*; it has no arguments"
        ):
            await create(arguments='{"x": 1}')
        # The executor must be one that runs the function: refused now, not when the task runs.
        with pytest.raises(InvalidArgumentError, match=r"^executor 'python' cannot run this function, whose executor"):
            await create(executor="python")
        python = await act.register_function("fo", name="f", executor_type="python", payload=b"def entrypoint(a): 1")
        tid = await services.tasks.create(caller("alice", ORG1), python, "{}", "python", {}, {})
        assert (await services.tasks.get(caller("alice"), tid)).executor == "mesapy"
        for bad_id in ("nope", "task-" + fid.split("-", 1)[1], "function-" + "0" * 32):
            with pytest.raises(InvalidFunctionIdError):
                await services.tasks.create(caller("alice", ORG1), bad_id, "{}", "builtin", {}, {})

    asyncio.run(go())


def test_optional_and_unknown_file_names(services, act):
    async def go():
        fid = await act.register_function("fo", inputs=INPUTS, outputs=OUTPUTS)

        async def create(inputs, outputs):
            return await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", inputs, outputs)

        await create(owners(in1=["alice"]), owners(out=["alice"]))
        await create(owners(in1=["alice"], opt=["bob"]), owners(out=["alice"]))
        for inputs, outputs, message in (
            (
                owners(opt=["alice"]),
                owners(out=["alice"]),
                "invalid task: inputs_ownership lacks 'in1', required inputs of the function; give each its owners",
            ),
            (
                owners(in1=["alice"], zzz=["alice"]),
                owners(out=["alice"]),
                "invalid task: inputs_ownership names 'zzz', which the function does not declare; "
                "its inputs: 'in1', 'opt'",
            ),
            (
                owners(in1=["alice"]),
                {},
                "invalid task: outputs_ownership lacks 'out', required outputs of the function; give each its owners",
            ),
        ):
            with pytest.raises(InvalidArgumentError) as refused:
                await create(inputs, outputs)
            assert refused.value.message == message

    asyncio.run(go())


def test_participants_and_role_gate(services, act):
    async def go():
        public = await act.register_function("fo", inputs=INPUTS, outputs=OUTPUTS)
        tid = await services.tasks.create(
            caller("alice", ORG1), public, "{}", "builtin", owners(in1=["carol"]), owners(out=["bob", "dave"])
        )
        task = await services.tasks.get(caller("alice"), tid)
        assert task.participants == {"alice", "bob", "carol", "dave"}
        assert task.function_owner == "fo"

        private = await act.register_function("fo", public=False, user_allowlist=["org1", "alice"])
        tid = await services.tasks.create(caller("alice", ORG1), private, "{}", "builtin", {}, {})
        assert (await services.tasks.get(caller("alice"), tid)).participants == {"alice", "fo"}
        # [QUIRK] the attribute, not the user id, is compared with the allowlist
        with pytest.raises(AccessDeniedError):
            await services.tasks.create(caller("alice", ORG2), private, "{}", "builtin", {}, {})
        await services.tasks.create(caller("root", ADMIN), private, "{}", "builtin", {}, {})
        for role in (FO, Role.parse("Invalid")):
            with pytest.raises(AccessDeniedError):
                await services.tasks.create(caller("fo", role), public, "{}", "builtin", {}, {})

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_assign_data_ownership_rules(services, act, storage):
    async def go():
        fid = await act.register_function("fo", inputs=INPUTS, outputs=OUTPUTS)
        tid = await services.tasks.create(
            caller("alice", ORG1), fid, "{}", "builtin", owners(in1=["alice", "bob"]), owners(out=["alice"])
        )
        alice_in = await act.register_input("alice")
        alice_out = await act.register_output("alice")
        shared_out = await services.files.register_fusion_output(caller("alice"), ["alice", "bob"])
        shared_in = shared_out.replace("output-", "input-")
        await storage.update_json(shared_out, cmac={"tag": list(range(16))})
        await services.files.register_input_from_output(caller("alice"), shared_out)

        async def assign(user_id, *args):
            await services.tasks.assign_data(caller(user_id), *args)

        with pytest.raises(AccessDeniedError):  # owners {alice} != declared {alice, bob}
            await assign("alice", tid, [("in1", alice_in)], [])
        with pytest.raises(AccessDeniedError):  # not a participant
            await assign("zed", tid, [], [])
        with pytest.raises(AccessDeniedError):  # undeclared name
            await assign("alice", tid, [("opt", shared_in)], [])
        with pytest.raises(InvalidArgumentError) as unparsable:  # INTERNAL in the reference
            await assign("alice", tid, [("in1", "garbage")], [])
        assert unparsable.value.message == (
            "inputs: data id 'garbage' for 'in1' is not an input id (input-<uuid>, as RegisterInputFile answers)"
        )
        with pytest.raises(InvalidDataIdError):  # an output id among inputs
            await assign("alice", tid, [("in1", alice_out)], [])
        with pytest.raises(InvalidDataIdError):
            await assign("alice", tid, [("in1", "input-" + "1" * 32)], [])
        commits = len(storage.commits)
        with pytest.raises(AccessDeniedError):  # the second entry fails: nothing is written
            await assign("alice", tid, [("in1", shared_in)], [("out", shared_out)])
        assert len(storage.commits) == commits and storage.json(tid)["assigned_inputs"] == {"inner": {}}
        with pytest.raises(AccessDeniedError):  # the same name twice
            await assign("alice", tid, [("in1", shared_in), ("in1", shared_in)], [])

        await assign("bob", tid, [("in1", shared_in)], [])
        assert storage.json(tid)["status"] == "Created"
        with pytest.raises(AccessDeniedError):  # already assigned
            await assign("alice", tid, [("in1", shared_in)], [])
        await assign("alice", tid, [], [("out", alice_out)])
        task = await services.tasks.get(caller("bob"), tid)
        assert task.status.name == "DATA_ASSIGNED"
        assert task.assigned_inputs["in1"].external_id == shared_in
        with pytest.raises(FailedOperationError, match="failed to assign data to task"):
            await assign("alice", tid, [], [])

    asyncio.run(go())


def test_two_party_approve_then_invoke(services, act, storage):
    async def go():
        fid, tid = await two_party(services, act)
        alice_in = await act.register_input("alice")
        bob_out = await act.register_output("bob")
        with pytest.raises(FailedOperationError, match=r"^failed to approve task$"):
            await services.tasks.approve(caller("alice"), tid)
        with pytest.raises(FailedOperationError) as refused:
            await services.tasks.invoke(caller("alice"), tid)
        assert refused.value.message == (
            "failed to invoke task: no file assigned to input in1; no file assigned to output out;"
            " not approved by alice, bob"
        )
        with pytest.raises(AccessDeniedError, match=r"^permission denied$"):  # told nothing more
            await services.tasks.invoke(caller("bob"), tid)
        await services.tasks.assign_data(caller("alice"), tid, [("in1", alice_in)], [])
        with pytest.raises(FailedOperationError, match=r"^failed to invoke task: no file assigned to output out;"):
            await services.tasks.invoke(caller("alice"), tid)
        await services.tasks.assign_data(caller("bob"), tid, [], [("out", bob_out)])
        with pytest.raises(FailedOperationError, match=r"^failed to invoke task: not approved by alice, bob$"):
            await services.tasks.invoke(caller("alice"), tid)
        with pytest.raises(AccessDeniedError):
            await services.tasks.approve(caller("zed"), tid)
        await services.tasks.approve(caller("alice"), tid)
        await services.tasks.approve(caller("alice"), tid)  # idempotent
        assert storage.json(tid)["status"] == "DataAssigned"
        with pytest.raises(FailedOperationError, match=r"^failed to invoke task: not approved by bob$"):
            await services.tasks.invoke(caller("alice"), tid)
        await services.tasks.approve(caller("bob"), tid)
        assert storage.json(tid)["status"] == "Approved"
        with pytest.raises(FailedOperationError, match="failed to approve task"):
            await services.tasks.approve(caller("bob"), tid)
        with pytest.raises(AccessDeniedError):  # only the creator invokes
            await services.tasks.invoke(caller("bob"), tid)
        await services.tasks.invoke(caller("alice"), tid)
        assert storage.json(tid)["status"] == "Staged"
        steps = [(what, user) for _, what, user in storage.json(tid)["history"]]  # the task's timeline
        assert steps == [
            ("DataAssigned", ""),
            ("Approval", "alice"),
            ("Approval", "bob"),
            ("Approved", ""),
            ("Staged", ""),
        ]
        (element,) = storage.queue_json(b"staged-task")
        staged = element["staged_task"]
        assert "task" not in element  # no copy of the record that could disagree with storage
        assert staged["input_data"]["inner"]["in1"]["url"] == "https://example.com/in"
        assert staged["output_data"]["inner"]["out"]["url"] == "https://example.com/out"
        assert staged["function_arguments"] == {"inner": {"a": 5, "b": "2"}}
        assert storage.json(usage_key(ExternalId.parse(fid).uuid))["use_numbers"] == 1
        with pytest.raises(FailedOperationError, match=r"^failed to invoke task: it is already Staged$"):
            await services.tasks.invoke(caller("alice"), tid)

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_single_user_task_invokes_directly(services, act, storage):
    async def go():
        fid = await act.register_function("fo", name="builtin-echo", payload=b"\x01\x02")
        tid = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        await services.tasks.invoke(caller("alice"), tid)
        task_uuid, function_uuid = tid.split("-", 1)[1], fid.split("-", 1)[1]
        assert [e["staged_task"] for e in storage.queue_json(b"staged-task")] == [
            {
                "task_id": task_uuid,
                "function_id": function_uuid,
                "user_id": "alice",
                "executor": "Builtin",
                "executor_type": "Builtin",
                "function_name": "builtin-echo",
                "function_arguments": {"inner": {}},
                "function_payload": [],
                "input_data": {"inner": {}},
                "output_data": {"inner": {}},
            }
        ]
        # The payload stays in its record: the element names it.
        assert [e.get("payload_sha256") for e in storage.queue_json(b"staged-task")] == [payload_sha256(b"\x01\x02")]
        # The record rides along, byte for byte as stored: the scheduler hands the task out on it.
        assert [e["stored"].encode() for e in storage.queue_json(b"staged-task")] == [await storage.get(tid.encode())]
        (commit,) = storage.commits[-1:]
        # The checks of task, function, counter and requirements; task, usage and queue in one commit.
        assert len(commit) == 7
        assert len(services.locks) == 0

    asyncio.run(go())


def test_quota_exhaustion_and_deleted_function(services, act, storage):
    async def go():
        fid = await act.register_function("fo", usage_quota=1)
        first = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        second = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        await services.tasks.invoke(caller("alice"), first)
        with pytest.raises(FailedOperationError, match=r"^function quota has been used up$"):
            await services.tasks.invoke(caller("alice"), second)
        assert storage.json(second)["status"] == "Created"
        zero = await act.register_function("fo", usage_quota=0)
        task = await services.tasks.create(caller("alice", ORG1), zero, "{}", "builtin", {}, {})
        with pytest.raises(FailedOperationError, match="quota"):
            await services.tasks.invoke(caller("alice"), task)
        await services.functions.delete(caller("fo"), zero)
        with pytest.raises(InvalidFunctionIdError):
            await services.tasks.invoke(caller("alice"), task)

    asyncio.run(go())


def test_cancel_in_each_state(services, act, storage):
    async def go():
        fid = await act.register_function("fo")

        async def task_in(status: str) -> str:
            tid = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
            await storage.update_json(tid, status=status)
            return tid

        for status in ("Created", "DataAssigned", "Approved"):
            tid = await task_in(status)
            await services.tasks.cancel(caller("alice", ORG1), tid)
            assert storage.json(tid)["status"] == "Canceled"
            assert storage.json(tid)["result"] == {"Err": {"reason": "Task canceled"}}
        for status in ("Staged", "Running"):
            tid = await task_in(status)
            await services.tasks.cancel(caller("root", ADMIN), tid)
            assert storage.json(tid)["status"] == status  # the scheduler applies it
            assert storage.queue_json(b"cancel_queue")[-1] == storage.json(tid)
        for status in ("Finished", "Failed", "Canceled"):
            tid = await task_in(status)
            with pytest.raises(FailedOperationError) as error:
                await services.tasks.cancel(caller("alice", ORG1), tid)
            assert error.value.message == "failed to cancel task, reason: task has already been canceled"
        tid = await task_in("Created")
        with pytest.raises(AccessDeniedError):
            await services.tasks.cancel(caller("bob", ORG1), tid)
        with pytest.raises(InvalidTaskIdError):
            await services.tasks.cancel(caller("alice", ORG1), "task-zzz")

    asyncio.run(go())


def test_a_participant_rejects_a_task_before_it_is_invoked(services, act, storage):
    async def go():
        _, tid = await two_party(services, act)  # alice created it on her data; bob owns its output
        with pytest.raises(AccessDeniedError):
            await services.tasks.reject(caller("carol", ORG1), tid)  # not a participant
        assert storage.json(tid)["status"] == "Created"
        await services.tasks.reject(caller("bob", ORG2), tid)
        assert storage.json(tid)["status"] == "Canceled"
        assert storage.json(tid)["result"] == {"Err": {"reason": "Task rejected by bob"}}
        with pytest.raises(FailedOperationError, match="already Canceled; a task can be rejected only before"):
            await services.tasks.reject(caller("alice", ORG1), tid)
        for status in ("Staged", "Running", "Finished", "Failed"):  # once invoked, only Cancel stops it
            _, tid = await two_party(services, act)
            await storage.update_json(tid, status=status)
            with pytest.raises(FailedOperationError, match=f"already {status}"):
                await services.tasks.reject(caller("bob", ORG2), tid)
            assert storage.json(tid)["status"] == status and not storage.queue_json(b"cancel_queue")
        with pytest.raises(InvalidTaskIdError):
            await services.tasks.reject(caller("bob", ORG2), "task-zzz")

    asyncio.run(go())


def test_get_task_needs_participant(services, act):
    async def go():
        _, tid = await two_party(services, act)
        assert (await services.tasks.get(caller("bob"), tid)).creator == "alice"
        with pytest.raises(AccessDeniedError):
            await services.tasks.get(caller("root"), tid)  # no admin bypass
        for bad in ("", "task-", "task-xyz", tid.replace("task", "input"), "task-" + "2" * 32):
            with pytest.raises(InvalidTaskIdError):
                await services.tasks.get(caller("alice"), bad)

    asyncio.run(go())


def test_concurrent_approvals_are_both_kept(services, act, storage):
    async def go():
        fid = await act.register_function("fo", outputs=OUTPUTS)
        tid = await services.tasks.create(
            caller("alice", ORG1), fid, "{}", "builtin", {}, owners(out=["alice", "bob", "carol"])
        )
        out = await services.files.register_fusion_output(caller("alice"), ["alice", "bob", "carol"])
        await services.tasks.assign_data(caller("alice"), tid, [], [("out", out)])
        await asyncio.gather(*(services.tasks.approve(caller(u), tid) for u in ("alice", "bob", "carol")))
        assert storage.json(tid)["approved_users"] == {"uids": ["alice", "bob", "carol"]}
        assert storage.json(tid)["status"] == "Approved"
        assert len(services.locks) == 0

    asyncio.run(go())


def test_wait_returns_when_task_ends(services, act, storage):
    async def go():
        fid = await act.register_function("fo")
        tid = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        await services.tasks.invoke(caller("alice"), tid)

        async def scheduler():
            await asyncio.sleep(0.01)
            await storage.update_json(tid, status="Running")
            await asyncio.sleep(0.01)
            await storage.update_json(tid, status="Finished", result={"Err": {"reason": "boom"}})

        loop = asyncio.get_running_loop()
        started = loop.time()
        task, _ = await asyncio.gather(services.tasks.wait(caller("alice"), tid, 30_000), scheduler())
        assert task.status.name == "FINISHED" and task.result.failure == "boom"
        assert loop.time() - started < 5

    asyncio.run(go())


def test_wait_times_out_and_checks_access(services, act, storage):
    async def go():
        fid = await act.register_function("fo")
        tid = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        task = await services.tasks.wait(caller("alice"), tid, 50)
        assert task.status.name == "CREATED"
        task = await services.tasks.wait(caller("alice"), tid, 0)
        assert task.status.name == "CREATED"
        with pytest.raises(AccessDeniedError):
            await services.tasks.wait(caller("bob"), tid, 0)
        with pytest.raises(InvalidTaskIdError):
            await services.tasks.wait(caller("alice"), "task-1", 0)
        await storage.update_json(tid, status="Canceled")
        assert (await services.tasks.wait(caller("alice"), tid, 60_000)).status.name == "CANCELED"

    asyncio.run(go())


def test_wait_asked_to_return_if_stuck_answers_while_the_task_cannot_end(services, act, storage):
    """Not invoked, or invoked but waiting for an execution service: answered at once; staged and
    runnable: waited for as usual, until it starts waiting for a service."""

    async def go():
        fid = await act.register_function("fo")
        tid = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        alice = caller("alice")
        stuck = await asyncio.wait_for(services.tasks.wait(alice, tid, 60_000, return_if_stuck=True), 10)
        assert stuck.status.name == "CREATED"
        await services.tasks.invoke(alice, tid)
        waiter = asyncio.ensure_future(services.tasks.wait(alice, tid, 60_000, return_if_stuck=True))
        await asyncio.sleep(0.1)
        assert not waiter.done(), "a staged task that can run is waited for"
        await storage.update_json(tid, waiting_reason="no live execution service can run it")
        task = await asyncio.wait_for(waiter, 10)
        assert task.status.name == "STAGED" and task.waiting_reason == "no live execution service can run it"
        assert (await services.tasks.wait(alice, tid, 50)).status.name == "STAGED"  # without the flag: its timeout

    asyncio.run(go())


def test_approvals_bind_the_terms_and_staging_carries_the_manifest(services, act, storage):
    """Each approval records the terms hash as the task and function stood; invoking stages the
    manifest with those approvals, keeps it with the task, and an approval given to other terms
    stays as it was."""
    from cloister.model.manifest import TaskManifest, check_manifest, run_view_of_staged
    from cloister.model.tasks import StagedElement

    async def go():
        _, tid = await two_party(services, act)
        await services.tasks.assign_data(caller("alice"), tid, [("in1", await act.register_input("alice"))], [])
        await services.tasks.assign_data(caller("bob"), tid, [], [("out", await act.register_output("bob"))])
        await services.tasks.approve(caller("alice"), tid)
        alice_hash = storage.json(tid)["approvals"]["alice"]
        await services.tasks.approve(caller("bob"), tid)
        assert storage.json(tid)["approvals"] == {"alice": alice_hash, "bob": alice_hash}
        await services.tasks.invoke(caller("alice"), tid)
        (raw,) = storage.queue_json(b"staged-task")
        element = StagedElement.from_json(raw)
        manifest = TaskManifest.from_bytes(element.staged.manifest or b"")
        assert manifest.terms_hash == alice_hash and dict(manifest.approvals) == {
            "alice": alice_hash,
            "bob": alice_hash,
        }
        assert set(manifest.participants) == {"alice", "bob"}
        check_manifest(manifest, run_view_of_staged(element.staged))
        # The task keeps the very bytes it was staged with: its receipt binds only their hash.
        assert storage.json(tid)["manifest"].encode() == element.staged.manifest
        assert (await services.tasks.get(caller("bob"), tid)).manifest == element.staged.manifest

    asyncio.run(go())


@pytest.mark.fake_storage
def test_invoking_a_single_party_task_approves_it(services, act, storage):
    from cloister.model.manifest import TaskManifest, check_manifest, run_view_of_staged
    from cloister.model.tasks import StagedElement

    async def go():
        fid = await act.register_function("fo", name="builtin-echo", payload=b"\x01\x02")
        tid = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        await services.tasks.invoke(caller("alice"), tid)
        (raw,) = storage.queue_json(b"staged-task")
        element = StagedElement.from_json(raw)
        manifest = TaskManifest.from_bytes(element.staged.manifest or b"")
        assert dict(manifest.approvals) == {"alice": manifest.terms_hash}
        assert storage.json(tid)["approvals"] == {"alice": manifest.terms_hash}
        check_manifest(manifest, run_view_of_staged(replace(element.staged, function_payload=b"\x01\x02")))

    asyncio.run(go())


@pytest.mark.fake_storage  # counts the fake's reads
def test_invoking_a_task_created_here_reads_nothing_back(services, act, storage):
    # Management keeps the records it wrote or read (the task it created, the function, its
    # counter): an invoke decides on them and its commit checks their versions.
    async def go():
        fid = await act.register_function("fo", name="builtin-echo")
        first = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        await services.tasks.invoke(caller("alice"), first)
        second = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        storage.reads.clear()
        await services.tasks.invoke(caller("alice"), second)
        assert storage.reads == []
        assert storage.json(second)["status"] == "Staged"
        assert storage.json(usage_key(ExternalId.parse(fid).uuid))["use_numbers"] == 2

    asyncio.run(go())


def test_an_invoke_after_a_change_elsewhere_decides_on_the_change(services, act, storage, authorizer):
    # Another management replica counts uses of the same function: what this one kept is stale.
    async def go():
        fid = await act.register_function("fo", usage_quota=1)
        counter = usage_key(ExternalId.parse(fid).uuid).decode()
        first = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        second = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        await services.tasks.invoke(caller("alice"), first)
        decisions = 0
        decide = authorizer.decide

        async def counting(subject, queries):
            nonlocal decisions
            decisions += 1
            return await decide(subject, queries)

        authorizer.decide = counting
        # The quota is used up, and what was kept says so: refused once, not decided again.
        with pytest.raises(FailedOperationError, match="quota"):
            await services.tasks.invoke(caller("alice"), second)
        assert decisions == 1
        # Elsewhere the use is given back: the refusal made on the kept counter is decided again.
        await storage.update_json(counter, use_numbers=0)
        decisions = 0
        await services.tasks.invoke(caller("alice"), second)
        assert decisions == 2
        assert storage.json(second)["status"] == "Staged"
        assert storage.json(counter)["use_numbers"] == 1
        # A use counted elsewhere is not written over either.
        third = await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        await storage.update_json(counter, use_numbers=0)
        await services.tasks.invoke(caller("alice"), third)
        assert storage.json(counter)["use_numbers"] == 1

    asyncio.run(go())


def test_a_task_is_not_created_on_a_function_deleted_elsewhere(services, act, storage):
    # This management kept the function when it created the first task; another replica then
    # deleted it. The create decided on the kept record is refused by storage and decided again.
    async def go():
        fid = await act.register_function("fo")
        await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        before = set(await storage.keys_with_prefix(b"task"))
        await storage.commit([Delete(fid.encode())])
        with pytest.raises(InvalidFunctionIdError):
            await services.tasks.create(caller("alice", ORG1), fid, "{}", "builtin", {}, {})
        assert set(await storage.keys_with_prefix(b"task")) == before

    asyncio.run(go())
