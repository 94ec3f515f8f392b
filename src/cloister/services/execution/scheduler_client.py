"""The scheduler as the execution service sees it: typed calls over a :class:`Peer`."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import replace

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_scheduler_service_pb2 as spb
from cloister._proto import teaclave_scheduler_service_pb2_grpc as sgrpc
from cloister.errors import CloisterError
from cloister.model.executors import ExecutorInfo
from cloister.model.functions import parse_sha256
from cloister.model.tasks import StagedTask, TaskResult
from cloister.rpc.channel import Peer
from cloister.rpc.convert.scheduling import executor_info_to_proto, task_ids_from_proto
from cloister.rpc.convert.tasks import task_result_to_proto
from cloister.rpc.long_poll import long_poll_deadline
from cloister.services.execution.payloads import PayloadCache

logger = logging.getLogger(__name__)


class UnreadableStagedTaskError(Exception):
    """The scheduler handed out a task this service cannot run: its JSON is unreadable, or its
    payload is missing or not the one it names. ``reason`` is what the task fails with."""

    def __init__(
        self, task_id: uuid.UUID | None, detail: str, reason: str = "the staged task could not be read"
    ) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(detail)


def _parse_staged_task(raw: bytes) -> StagedTask:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UnreadableStagedTaskError(None, f"staged task is not JSON: {exc}") from None
    try:
        return StagedTask.from_json(data)
    except (KeyError, TypeError, ValueError, CloisterError) as exc:
        task_id = None
        with contextlib.suppress(KeyError, TypeError, ValueError):
            task_id = uuid.UUID(data["task_id"])
        raise UnreadableStagedTaskError(task_id, f"staged task is malformed: {type(exc).__name__}: {exc}") from None


class SchedulerClient:
    def __init__(self, peer: Peer, payloads: PayloadCache) -> None:
        self._peer = peer
        self._payloads = payloads

    async def pull_task_wait(self, info: ExecutorInfo, timeout: float) -> StagedTask | None:
        """A task for this executor, already marked Running, with its payload; None when none
        came in ``timeout``."""
        with self._payloads.advertised() as cached:
            request = cpb.PullTaskWaitRequest(
                executor=executor_info_to_proto(info), timeout_ms=int(timeout * 1000), cached_payloads=cached
            )
            response = await self._peer.call(
                cgrpc.SchedulerStub, "PullTaskWait", request, timeout=long_poll_deadline(timeout)
            )
            if not response.staged_task:
                return None
            staged = replace(_parse_staged_task(response.staged_task), trace=response.traceparent[:128])
            if response.manifest:
                staged = replace(staged, manifest=response.manifest)
            if not response.payload_sha256:  # an older scheduler: the JSON carries the payload
                return staged
            return await self._with_payload(staged, response.payload_sha256, response.function_payload)

    async def _with_payload(self, staged: StagedTask, digest_text: str, payload: bytes) -> StagedTask:
        try:
            digest = parse_sha256(digest_text)
        except ValueError as exc:
            raise UnreadableStagedTaskError(staged.task_id, f"bad payload digest: {exc}") from None
        if payload:
            if not await self._payloads.add(digest, payload):
                raise UnreadableStagedTaskError(
                    staged.task_id, "the payload handed out is not the one its digest names"
                )
            logger.info(
                "task %s: payload %s received (%d bytes); %d bytes of payloads held",
                staged.task_id,
                digest[:16],
                len(payload),
                self._payloads.size,
            )
        else:
            held = self._payloads.get(digest)
            if held is None:
                raise UnreadableStagedTaskError(
                    staged.task_id,
                    f"payload {digest} was neither handed out nor held here",
                    reason="the function's payload is no longer stored (the function was updated or"
                    " deleted after the task was invoked)",
                )
            payload = held
        return replace(staged, function_payload=payload, function_payload_sha256=digest)

    async def confirm_task(self, info: ExecutorInfo, task_id: uuid.UUID) -> None:
        """Tell the scheduler this service runs ``task_id``; NotFoundError: it must not."""
        request = cpb.ConfirmTaskRequest(executor=executor_info_to_proto(info), task_id=str(task_id))
        await self._peer.call(cgrpc.SchedulerStub, "ConfirmTask", request)

    async def executor_heartbeat(
        self, info: ExecutorInfo, running: Iterable[uuid.UUID], wait: float
    ) -> list[uuid.UUID]:
        """Report the running tasks; answers with those to cancel, at once or after ``wait``."""
        request = cpb.ExecutorHeartbeatRequest(
            executor=executor_info_to_proto(info), running_task_ids=[str(t) for t in running], wait_ms=int(wait * 1000)
        )
        response = await self._peer.call(
            cgrpc.SchedulerStub, "ExecutorHeartbeat", request, timeout=long_poll_deadline(wait)
        )
        return task_ids_from_proto(response.cancel_task_ids)

    async def update_task_result(self, task_id: uuid.UUID, result: TaskResult) -> None:
        request = spb.UpdateTaskResultRequest(task_id=str(task_id), result=task_result_to_proto(result))
        await self._peer.call(sgrpc.TeaclaveSchedulerStub, "UpdateTaskResult", request)

    async def report_task_result(self, task_id: uuid.UUID, result: TaskResult, receipt: str) -> None:
        """UpdateTaskResult with the task's receipt (Cloister's ReportTaskResult)."""
        update = spb.UpdateTaskResultRequest(task_id=str(task_id), result=task_result_to_proto(result))
        request = cpb.ReportTaskResultRequest(update=update, receipt=receipt)
        await self._peer.call(cgrpc.SchedulerStub, "ReportTaskResult", request)
