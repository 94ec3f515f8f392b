"""The servicers called directly, as the gRPC server would, with identity metadata."""

from __future__ import annotations

import asyncio
import ipaddress
import json

import pytest
from policy_authorizer import PolicyAuthorizer

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister._proto import teaclave_management_service_pb2 as mpb
from cloister.errors import (
    AccessDeniedError,
    FailedOperationError,
    InvalidArgumentError,
    InvalidFunctionIdError,
    StatusCode,
)
from cloister.services.management.service import create_servicers


class Context:
    def __init__(self, user_id: str | None = None, role: str | None = None) -> None:
        self._metadata = [(k, v) for k, v in (("id", user_id), ("role", role)) if v is not None]

    def invocation_metadata(self):
        return self._metadata


ALICE = Context("alice", "DataOwner-org1")
FO = Context("fo", "FunctionOwner")
ADMIN = Context("admin", "PlatformAdmin")


@pytest.fixture
def servicers(storage):
    return create_servicers(storage, PolicyAuthorizer())


def test_identity_metadata_is_required(servicers):
    management, _ = servicers

    async def go():
        with pytest.raises(FailedOperationError, match="missing user id") as error:
            await management.GetTask(fe_pb.GetTaskRequest(task_id="task-x"), Context())
        assert error.value.status is StatusCode.UNKNOWN
        with pytest.raises(FailedOperationError, match="missing user role"):
            await management.GetFunction(fe_pb.GetFunctionRequest(function_id="f"), Context("alice"))
        with pytest.raises(InvalidFunctionIdError):  # role is not needed here
            await management.DeleteFunction(fe_pb.DeleteFunctionRequest(function_id="f"), Context("alice"))

    asyncio.run(go())


def test_function_and_task_round_trip(servicers, storage):
    management, cloister_management = servicers

    async def go():
        registered = await management.RegisterFunction(
            fe_pb.RegisterFunctionRequest(
                name="builtin-echo",
                executor_type="builtin",
                public=True,
                arguments=[fe_pb.FunctionArgument(key="message", allow_overwrite=True)],
                usage_quota=-1,
            ),
            FO,
        )
        fid = registered.function_id
        got = await management.GetFunction(fe_pb.GetFunctionRequest(function_id=fid), ALICE)
        assert got.name == "builtin-echo" and got.owner == "fo" and got.executor_type == "builtin"
        stats = await management.GetFunctionUsageStats(fe_pb.GetFunctionUsageStatsRequest(function_id=fid), ALICE)
        assert (stats.function_quota, stats.current_usage) == (-1, 0)
        listed = await management.ListFunctions(fe_pb.ListFunctionsRequest(user_id="fo"), FO)
        assert list(listed.registered_functions) == [fid]

        created = await management.CreateTask(
            fe_pb.CreateTaskRequest(
                function_id=fid, function_arguments=json.dumps({"message": "Hello"}), executor="builtin"
            ),
            ALICE,
        )
        tid = created.task_id
        await management.InvokeTask(fe_pb.InvokeTaskRequest(task_id=tid), ALICE)
        task = await management.GetTask(fe_pb.GetTaskRequest(task_id=tid), ALICE)
        assert task.status == common_pb.Staged and task.function_id == fid and task.creator == "alice"
        assert task.function_arguments == '{"message":"Hello"}'
        assert task.result.WhichOneof("result") is None

        async def finish():
            await asyncio.sleep(0.01)
            await storage.update_json(
                tid,
                status="Finished",
                result={"Ok": {"return_value": list(b"Hello"), "tags_map": {"inner": {}}, "log": []}},
            )

        waited, _ = await asyncio.gather(
            cloister_management.WaitTask(cpb.WaitTaskRequest(task_id=tid, timeout_ms=10_000), ALICE), finish()
        )
        assert waited.status == common_pb.Finished and waited.result.Ok.return_value == b"Hello"
        with pytest.raises(AccessDeniedError):
            await cloister_management.WaitTask(cpb.WaitTaskRequest(task_id=tid), Context("bob", "DataOwner-x"))
        stats = await management.GetFunctionUsageStats(fe_pb.GetFunctionUsageStatsRequest(function_id=fid), ALICE)
        assert stats.current_usage == 1

    asyncio.run(go())


def test_files_through_servicer(servicers):
    management, _ = servicers

    async def go():
        crypto = common_pb.FileCryptoInfo(schema="teaclave-file-128", key=bytes(16))
        registered = await management.RegisterInputFile(
            fe_pb.RegisterInputFileRequest(url="https://x.example/a", cmac=bytes(16), crypto_info=crypto), ALICE
        )
        got = await management.GetInputFile(fe_pb.GetInputFileRequest(data_id=registered.data_id), ALICE)
        assert list(got.owner) == ["alice"] and got.cmac == bytes(16)
        updated = await management.UpdateInputFile(
            fe_pb.UpdateInputFileRequest(data_id=registered.data_id, url="https://x.example/b"), ALICE
        )
        assert updated.data_id != registered.data_id
        fusion = await management.RegisterFusionOutput(
            fe_pb.RegisterFusionOutputRequest(owner_list=["alice", "bob"]), ALICE
        )
        out = await management.GetOutputFile(fe_pb.GetOutputFileRequest(data_id=fusion.data_id), ALICE)
        assert sorted(out.owner) == ["alice", "bob"] and out.cmac == b""
        with pytest.raises(InvalidArgumentError, match="invalid output file"):
            await management.RegisterInputFromOutput(
                fe_pb.RegisterInputFromOutputRequest(data_id=fusion.data_id), ALICE
            )

    asyncio.run(go())


def test_audit_through_servicer(servicers):
    management, cloister_management = servicers

    async def go():
        ip = ipaddress.IPv6Address("::10.0.0.1").packed
        logs = [
            common_pb.Entry(
                microsecond=1, ip=ip, user="{ user: a, role: PlatformAdmin }", message="get_task", result=True
            ),
            common_pb.Entry(microsecond=2 * 10**6, ip=ip, user="", message="authenticate to get_task", result=False),
        ]
        await management.SaveLogs(mpb.SaveLogsRequest(logs=logs), Context())  # no identity needed
        answer = await management.QueryAuditLogs(fe_pb.QueryAuditLogsRequest(query="get_task", limit=10), ADMIN)
        assert [e.message for e in answer.logs] == ["authenticate to get_task", "get_task"]
        assert answer.logs[1] == logs[0]
        with pytest.raises(AccessDeniedError):
            await management.QueryAuditLogs(fe_pb.QueryAuditLogsRequest(query="", limit=1), ALICE)
        with pytest.raises(FailedOperationError, match="ip must be 16 bytes"):
            await management.SaveLogs(mpb.SaveLogsRequest(logs=[common_pb.Entry(ip=b"\x01")]), Context())
        page = await cloister_management.QueryAuditPage(cpb.QueryAuditPageRequest(query="get_task", limit=1), ADMIN)
        assert [(r.seq, r.entry) for r in page.records] == [(1, logs[0])]
        assert (page.next_after, page.head, page.cut_through) == (1, 2, 0)
        page = await cloister_management.QueryAuditPage(cpb.QueryAuditPageRequest(query="get_task", after=1), ADMIN)
        assert [(r.seq, r.entry) for r in page.records] == [(2, logs[1])] and page.next_after == 2
        with pytest.raises(AccessDeniedError):
            await cloister_management.QueryAuditPage(cpb.QueryAuditPageRequest(), ALICE)
        with pytest.raises(InvalidArgumentError, match="query is not valid"):
            await cloister_management.QueryAuditPage(cpb.QueryAuditPageRequest(query="date:soon"), ADMIN)

    asyncio.run(go())
