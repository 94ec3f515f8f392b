"""An execution-service stand-in that pulls and confirms one task and then never reports: killed by the test.

It holds a real execution identity and speaks the scheduler's protocol over attested TLS. Sent
``report`` on stdin, it reports an Ok result for the task late and prints the scheduler's answer
(``accepted`` or ``refused <status>``).
Usage: python stalled_executor.py STATE_DIR
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_common_pb2 as common
from cloister._proto import teaclave_scheduler_service_pb2 as spb
from cloister._proto import teaclave_scheduler_service_pb2_grpc as sgrpc
from cloister.config import load_settings
from cloister.errors import CloisterError
from cloister.model.tasks import StagedTask
from cloister.rpc.channel import Peer
from cloister.rpc.runtime import ServiceRuntime
from cloister.storage.records import decode


async def main(state_dir: Path) -> None:
    settings = load_settings(state_dir.parent / "cloister.toml", {}, state_dir=state_dir)
    runtime = await ServiceRuntime.start(settings, "execution")
    scheduler = runtime.peer("scheduler")
    info = cpb.ExecutorInfo(executor_id=str(uuid.uuid4()), executors=["builtin"], slots=1)
    print("waiting", flush=True)
    while True:
        response = await scheduler.call(
            cgrpc.SchedulerStub, "PullTaskWait", cpb.PullTaskWaitRequest(executor=info, timeout_ms=10_000)
        )
        if response.staged_task:
            break
    staged = decode(response.staged_task, StagedTask.from_json)
    assert staged is not None
    confirm = cpb.ConfirmTaskRequest(executor=info, task_id=str(staged.task_id))
    await scheduler.call(cgrpc.SchedulerStub, "ConfirmTask", confirm)
    print("pulled", flush=True)
    # It heartbeats, listing the task as running, until it is killed: a live executor, not a lost one.
    beat = cpb.ExecutorHeartbeatRequest(executor=info, running_task_ids=[str(staged.task_id)], wait_ms=0)
    heartbeats = asyncio.create_task(_heartbeats(scheduler, beat))
    command = await asyncio.to_thread(sys.stdin.readline)
    if command.strip() == "report":
        late = common.TaskResult(Ok=common.TaskOutputs(return_value=b"late"))
        request = spb.UpdateTaskResultRequest(task_id=str(staged.task_id), result=late)
        try:
            await scheduler.call(sgrpc.TeaclaveSchedulerStub, "UpdateTaskResult", request)
            print("accepted", flush=True)
        except CloisterError as exc:
            print(f"refused {exc.status.name}", flush=True)
    await heartbeats


async def _heartbeats(scheduler: Peer, request: cpb.ExecutorHeartbeatRequest) -> None:
    while True:
        await scheduler.call(cgrpc.SchedulerStub, "ExecutorHeartbeat", request)
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
