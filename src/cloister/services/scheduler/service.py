"""The scheduler process: take the lease, rebuild the state from storage, then serve executors.

Several scheduler processes may run against one storage; all but the lease holder stand by,
without listening, so executors (which try each configured scheduler address in turn) and
load balancers find only the active one (``leadership``).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_scheduler_service_pb2_grpc as sgrpc
from cloister.config import Settings
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.scheduler.dispatcher import Scheduler
from cloister.services.scheduler.leadership import FencedStorage, Leadership, LeadershipLostError
from cloister.services.scheduler.results import TaskResults
from cloister.services.scheduler.servicer import SchedulerServicer, TeaclaveSchedulerServicer
from cloister.storage.client import StorageClient

logger = logging.getLogger(__name__)


def holder_id(settings: Settings) -> str:
    """This scheduler's name in the lease: the same when it restarts in place, so it takes its lease back at once."""
    return f"{socket.gethostname()}:{settings.state_dir}:{settings.process_name('scheduler')}"


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "scheduler")
    leadership = Leadership(
        StorageClient(runtime.peer("storage")), holder_id(settings), settings.scheduler.lease_seconds
    )
    await leadership.acquire()
    storage = FencedStorage(StorageClient(runtime.peer("storage")), leadership)
    # An execution service gives up on a silent scheduler after a heartbeat and a peer timeout, then
    # tries the next: twice that, before a task is said to have no live execution service.
    reconnect = 2 * (settings.rpc.peer_timeout_seconds + settings.execution.heartbeat_seconds)
    scheduler = Scheduler(
        storage,
        settings.scheduler,
        queue_watch_seconds=settings.rpc.long_poll_seconds,
        reconnect_seconds=reconnect,
    )
    results = TaskResults(storage, scheduler.state)
    await scheduler.start()
    lost: list[LeadershipLostError] = []

    async def keep_lease() -> None:
        try:
            await leadership.keep()
        except LeadershipLostError as exc:
            logger.error("%s; stopping, to stand by again after a restart", exc.message)
            lost.append(exc)
            runtime.stop()

    keeping = asyncio.create_task(keep_lease(), name="scheduler-lease")
    try:
        await runtime.serve(
            "scheduler",
            [
                lambda s: cgrpc.add_SchedulerServicer_to_server(SchedulerServicer(scheduler, results), s),
                lambda s: sgrpc.add_TeaclaveSchedulerServicer_to_server(
                    TeaclaveSchedulerServicer(scheduler, results), s
                ),
            ],
        )
        # Its loops stop before its peers close under them (which they would take for a failure).
        await runtime.run_until_stopped(before_shutdown=scheduler.stop)
    finally:
        keeping.cancel()
        await scheduler.stop()
    if lost:
        raise lost[0]
