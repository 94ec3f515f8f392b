"""The scheduler process: rebuild the state from storage, then serve executors."""

from __future__ import annotations

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_scheduler_service_pb2_grpc as sgrpc
from cloister.config import Settings
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.scheduler.dispatcher import Scheduler
from cloister.services.scheduler.results import TaskResults
from cloister.services.scheduler.servicer import SchedulerServicer, TeaclaveSchedulerServicer
from cloister.storage.client import StorageClient


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "scheduler")
    storage = StorageClient(runtime.peer("storage"))
    scheduler = Scheduler(storage, settings.scheduler)
    results = TaskResults(storage, scheduler.state)
    await scheduler.start()
    try:
        await runtime.serve(
            "scheduler",
            [
                lambda s: cgrpc.add_SchedulerServicer_to_server(SchedulerServicer(scheduler), s),
                lambda s: sgrpc.add_TeaclaveSchedulerServicer_to_server(
                    TeaclaveSchedulerServicer(scheduler, results), s
                ),
            ],
        )
        # Its loops stop before its peers close under them (which they would take for a failure).
        await runtime.run_until_stopped(before_shutdown=scheduler.stop)
    finally:
        await scheduler.stop()
