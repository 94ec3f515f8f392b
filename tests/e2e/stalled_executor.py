"""An execution-service stand-in that pulls one task and then never reports: killed by the test.

It holds a real execution identity and speaks the scheduler's protocol over attested TLS.
Usage: python stalled_executor.py STATE_DIR
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister.config import load_settings
from cloister.rpc.runtime import ServiceRuntime


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
    print("pulled", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
