"""Scheduler RPCs: Cloister's long-poll executor RPCs and Teaclave's, decoded, run, encoded."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_common_pb2 as common
from cloister._proto import teaclave_scheduler_service_pb2 as spb
from cloister._proto import teaclave_scheduler_service_pb2_grpc as sgrpc
from cloister.errors import UnimplementedError
from cloister.model.tasks import StagedTask
from cloister.rpc.convert.scheduling import executor_info_from_proto, parse_uuid, task_ids_from_proto
from cloister.rpc.convert.tasks import task_result_from_proto
from cloister.services.scheduler.dispatcher import Scheduler
from cloister.services.scheduler.results import TaskResults
from cloister.services.scheduler.teaclave import TeaclaveExecutors
from cloister.storage.records import encode

_EMPTY = empty_pb2.Empty()
MAX_CACHED_PAYLOADS = 256
"""Digests of a PullTaskWait's ``cached_payloads`` looked at; any further ones are ignored."""


def _staged_bytes(staged: StagedTask) -> bytes:
    return encode(staged)


class SchedulerServicer(cgrpc.SchedulerServicer):
    def __init__(self, scheduler: Scheduler, results: TaskResults) -> None:
        self._scheduler = scheduler
        self._results = results

    async def ReportTaskResult(self, request: cpb.ReportTaskResultRequest, context: object) -> empty_pb2.Empty:
        update = request.update
        result = task_result_from_proto(update.result) if update.HasField("result") else None
        await self._results.update_task_result(update.task_id, result, receipt=request.receipt or None)
        return _EMPTY

    async def PullTaskWait(
        self, request: cpb.PullTaskWaitRequest, context: grpc.aio.ServicerContext
    ) -> cpb.PullTaskWaitResponse:
        staged = await self._scheduler.pull_task_wait(
            executor_info_from_proto(request.executor), request.timeout_ms / 1000, context.time_remaining
        )
        if staged is None:
            return cpb.PullTaskWaitResponse()
        digest = staged.function_payload_sha256
        cached = digest in request.cached_payloads[:MAX_CACHED_PAYLOADS]
        return cpb.PullTaskWaitResponse(
            staged_task=_staged_bytes(staged.without_payload()),
            manifest=staged.manifest or b"",
            traceparent=staged.trace,
            function_payload=b"" if cached else await self._scheduler.payload_of(staged),
            payload_sha256=digest,
        )

    async def ConfirmTask(self, request: cpb.ConfirmTaskRequest, context: object) -> empty_pb2.Empty:
        task_id = parse_uuid(request.task_id, "task id")
        await self._scheduler.confirm(executor_info_from_proto(request.executor), task_id)
        return _EMPTY

    async def ExecutorHeartbeat(
        self, request: cpb.ExecutorHeartbeatRequest, context: object
    ) -> cpb.ExecutorHeartbeatResponse:
        cancel = await self._scheduler.executor_heartbeat(
            executor_info_from_proto(request.executor),
            task_ids_from_proto(list(request.running_task_ids)),
            request.wait_ms / 1000,
        )
        return cpb.ExecutorHeartbeatResponse(cancel_task_ids=[str(t) for t in cancel])


class TeaclaveSchedulerServicer(sgrpc.TeaclaveSchedulerServicer):
    def __init__(self, scheduler: Scheduler, results: TaskResults) -> None:
        self._executors = TeaclaveExecutors(scheduler)
        self._results = results

    async def PublishTask(self, request: spb.PublishTaskRequest, context: object) -> empty_pb2.Empty:
        self._executors.publish_task(request.staged_task)
        return _EMPTY

    async def Subscribe(self, request: empty_pb2.Empty, context: object) -> spb.SubscribeResponse:
        raise UnimplementedError("Subscribe is not implemented (it never was in Teaclave)")

    async def PullTask(self, request: spb.PullTaskRequest, context: object) -> spb.PullTaskResponse:
        staged = await self._executors.pull_task(request.executor_id)
        return spb.PullTaskResponse(staged_task=_staged_bytes(staged))

    async def UpdateTaskStatus(self, request: spb.UpdateTaskStatusRequest, context: object) -> empty_pb2.Empty:
        await self._results.update_task_status(request.task_id)
        return _EMPTY

    async def UpdateTaskResult(self, request: spb.UpdateTaskResultRequest, context: object) -> empty_pb2.Empty:
        result = task_result_from_proto(request.result) if request.HasField("result") else None
        await self._results.update_task_result(request.task_id, result)
        return _EMPTY

    async def Heartbeat(self, request: spb.HeartbeatRequest, context: object) -> spb.HeartbeatResponse:
        command = await self._executors.heartbeat(request.executor_id, request.status == common.Executing)
        return spb.HeartbeatResponse(command=int(command))
