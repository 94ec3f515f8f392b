"""The execution service once its sandbox check is under way: an attested identity, the
executors, and the worker that pulls tasks from the scheduler until stopped."""

from __future__ import annotations

import asyncio
import logging
import uuid

from cloister.config import Settings
from cloister.errors import ConfigurationError
from cloister.executors import Sandbox, create_executors
from cloister.executors.sandbox.host import SandboxUnavailableError
from cloister.file_agent import FileAgent, TransferLimits
from cloister.model.executors import ExecutorInfo
from cloister.model.tasks import StagedTask
from cloister.rpc import addresses
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.execution.attestor import TaskAttestor
from cloister.services.execution.payloads import PayloadCache
from cloister.services.execution.runner import TaskRunner
from cloister.services.execution.scheduler_client import SchedulerClient
from cloister.services.execution.staging import DataPlane
from cloister.services.execution.worker import ExecutionWorker

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 4.0
"""Running tasks get this long to finish on SIGTERM (the launcher kills after 10 s)."""


async def _start_with_full_isolation(
    settings: Settings, sandbox: Sandbox, check: asyncio.Task[str]
) -> tuple[ServiceRuntime, str]:
    """The service's runtime and how tasks are isolated, once the sandbox ``check`` has passed.

    A service that cannot isolate tasks fully must not take any, and its refusal says so first.
    The runtime gets its attested identity while the check goes on.
    """
    start = asyncio.create_task(ServiceRuntime.start(settings, "execution"))
    await asyncio.wait([check, start])
    if check.exception() is None:
        logger.info("task sandbox: %s", check.result())
        if start.exception() is None:
            return start.result(), check.result()
    await sandbox.close()
    if start.exception() is None:
        await start.result().shutdown()
    failure = check.exception() or start.exception()
    assert failure is not None
    if isinstance(failure, SandboxUnavailableError):
        raise ConfigurationError(f"{failure.reason}; the execution service runs no task without it") from None
    raise failure


async def serve(settings: Settings, sandbox: Sandbox, check: asyncio.Task[str]) -> None:
    """Serve until stopped, with ``sandbox`` once ``check`` (its :func:`check_full_isolation`) passes."""
    runtime, isolation = await _start_with_full_isolation(settings, sandbox, check)
    addresses.publish_note(settings, settings.process_name("execution"), "sandbox", isolation)
    executors = create_executors(settings.execution.executors, sandbox)
    if not executors:
        raise ConfigurationError(
            f"none of the configured executors {list(settings.execution.executors)} is available; "
            'set execution.executors to include "builtin"'
        )
    info = ExecutorInfo(
        executor_id=str(uuid.uuid4()),
        executors=frozenset(executors),
        labels=tuple(settings.execution.labels),
        slots=settings.execution.slots,
    )
    settings.fusion_base_dir.mkdir(parents=True, exist_ok=True)
    agent = FileAgent(
        settings.fusion_base_dir,
        TransferLimits.from_settings(settings.execution),
        file_roots=settings.execution.file_roots,
        allowed_networks=settings.execution.allowed_networks,
    )
    audit = runtime.audit_trail()
    audit.start()

    async def audit_refusal(task: StagedTask, reason: str) -> None:
        await audit.record(bytes(16), "", f"refused to run task-{task.task_id}: {reason}", False)

    attestor = TaskAttestor(runtime.keeper.backend, runtime.keeper.current)
    runner = TaskRunner(executors, DataPlane(settings.execution_work_dir, agent), attestor, audit_refusal)
    worker = ExecutionWorker(
        SchedulerClient(
            runtime.peer("scheduler", replicas=[e.address for e in settings.execution.schedulers]),
            PayloadCache(settings.execution.payload_cache_bytes),
        ),
        runner,
        info,
        slots=settings.execution.slots,
        heartbeat_seconds=settings.execution.heartbeat_seconds,
        pull_timeout=settings.rpc.long_poll_seconds,
    )

    async def drain() -> None:
        await worker.stop(STOP_GRACE_SECONDS)
        await runner.aclose()
        await audit.stop()
        logger.info("execution service %s stopped", info.executor_id)

    worker.start()
    await runtime.run_until_stopped(before_shutdown=drain)
