"""The management process: serve Teaclave's management RPCs and Cloister's additions over storage,
asking the access control service before each action."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_management_service_pb2_grpc as mgrpc
from cloister.config import Settings
from cloister.rpc.authorizer import Authorizer, RemoteAuthorizer
from cloister.rpc.retry import supervised
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.management.audit import AuditLog
from cloister.services.management.audit_retention import AuditRetention
from cloister.services.management.files import FileService
from cloister.services.management.functions import FunctionService
from cloister.services.management.locks import KeyLocks
from cloister.services.management.servicer import CloisterManagementServicer, ManagementServicer
from cloister.services.management.tasks import TaskService
from cloister.storage.client import StorageClient

logger = logging.getLogger(__name__)


def create_servicers(
    storage: StorageClient, authorizer: Authorizer
) -> tuple[ManagementServicer, CloisterManagementServicer]:
    """Both servicers over one storage client and one authorizer, sharing one set of record locks."""
    locks = KeyLocks()
    tasks = TaskService(storage, locks, authorizer)
    functions = FunctionService(storage, locks, authorizer)
    files = FileService(storage, authorizer)
    audit = AuditLog(storage, authorizer)
    management = ManagementServicer(functions, files, tasks, audit)
    return management, CloisterManagementServicer(tasks, functions, audit)


def start_retention(settings: Settings, storage: StorageClient) -> asyncio.Task[None] | None:
    """Cut the audit log to its retention in the background, if one is set."""
    if settings.audit.retention_days <= 0:
        return None
    retention = AuditRetention(
        storage,
        settings.audit_export_dir,
        settings.audit.retention_days * 86_400,
        settings.audit.retention_interval_seconds,
    )
    return asyncio.create_task(supervised("audit retention", retention.run), name="audit-retention")


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "management")
    storage = StorageClient(runtime.peer("storage"))
    management, cloister_management = create_servicers(storage, RemoteAuthorizer(runtime.peer("access_control")))

    def register(server: grpc.aio.Server) -> None:
        mgrpc.add_TeaclaveManagementServicer_to_server(management, server)
        cgrpc.add_ManagementServicer_to_server(cloister_management, server)

    await runtime.serve("management", [register])

    # Function lists stored by an earlier version under names anyone can compute are renamed once.
    async def rename_user_records() -> None:
        if moved := await management.functions.upgrade_user_records():
            logger.info("renamed %d user(s)' function lists to keys that do not name them", moved)

    renaming = asyncio.create_task(
        supervised("renaming users' function lists", rename_user_records, done=lambda: True), name="rename-users"
    )
    audit = management.audit
    # Entries stored before the search index existed are indexed once, from the start.
    indexing = asyncio.create_task(
        supervised("audit index", audit.build_index, done=lambda: audit.index_built), name="audit-index"
    )
    retention = start_retention(settings, storage)

    async def stop_background() -> None:
        for task in (renaming, indexing, retention):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    await runtime.run_until_stopped(before_shutdown=stop_background)
