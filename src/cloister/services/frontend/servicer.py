"""Frontend RPCs: every one is admitted by the gate, forwarded to management and audited.

The 22 Teaclave methods differ only in their names, so each is one line of the table below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_frontend_service_pb2_grpc as fgrpc
from cloister._proto import teaclave_management_service_pb2_grpc as mgrpc
from cloister.errors import CloisterError
from cloister.rpc.audit_trail import AuditTrail, audit_user
from cloister.rpc.channel import Peer
from cloister.rpc.convert.tasks import wait_seconds
from cloister.rpc.errors import grpc_code
from cloister.rpc.forwarding import caller_ip
from cloister.rpc.long_poll import long_poll_deadline
from cloister.rpc.metadata import Caller, outgoing
from cloister.services.frontend.gate import Gate


class Forwarder:
    def __init__(self, gate: Gate, management: Peer, audit: AuditTrail) -> None:
        self._gate = gate
        self._management = management
        self._audit = audit

    async def forward(
        self,
        stub: type,
        method: str,
        api: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        timeout: float | None,
        *,
        audit_as: str | None = None,
    ) -> Any:
        """Admit the caller to ``api`` (the access-control API name), call management, and audit the
        call under ``audit_as`` (default: ``api``)."""
        ip = caller_ip(context)
        caller = Caller.from_metadata(context.invocation_metadata())
        try:
            principal = await self._gate.admit(caller, api)
        except CloisterError as exc:
            failure = "authentication failed" if exc.status.name == "UNAUTHENTICATED" else None
            await self._audit.record(ip, "", f"authenticate to {api}" + (f": {failure}" if failure else ""), False)
            raise
        user = audit_user(principal.user_id, principal.role.debug_form())
        api = audit_as or api
        metadata = outgoing(principal.user_id, caller.token or "", str(principal.role))
        try:
            response = await self._management.call(stub, method, request, metadata=metadata, timeout=timeout)
        except CloisterError as exc:
            code = grpc_code(exc.status)
            await self._audit.record(ip, user, f'{api}: status: {code.name}, message: "{exc.message}"', False)
            raise
        await self._audit.record(ip, user, api, True)
        return response


def _teaclave(method: str, api: str) -> Callable[..., Awaitable[Any]]:
    async def handler(self: FrontendServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._forwarder.forward(mgrpc.TeaclaveManagementStub, method, api, request, context, None)

    handler.__name__ = method
    handler.__doc__ = f"Forward {method} (access control API name ``{api}``)."
    return handler


class FrontendServicer(fgrpc.TeaclaveFrontendServicer):
    def __init__(self, forwarder: Forwarder) -> None:
        self._forwarder = forwarder

    RegisterInputFile = _teaclave("RegisterInputFile", "register_input_file")
    RegisterOutputFile = _teaclave("RegisterOutputFile", "register_output_file")
    UpdateInputFile = _teaclave("UpdateInputFile", "update_input_file")
    UpdateOutputFile = _teaclave("UpdateOutputFile", "update_output_file")
    RegisterFusionOutput = _teaclave("RegisterFusionOutput", "register_fusion_output")
    RegisterInputFromOutput = _teaclave("RegisterInputFromOutput", "register_input_from_output")
    GetOutputFile = _teaclave("GetOutputFile", "get_output_file")
    GetInputFile = _teaclave("GetInputFile", "get_input_file")
    RegisterFunction = _teaclave("RegisterFunction", "register_function")
    GetFunction = _teaclave("GetFunction", "get_function")
    GetFunctionUsageStats = _teaclave("GetFunctionUsageStats", "get_function_usage_stats")
    UpdateFunction = _teaclave("UpdateFunction", "update_function")
    ListFunctions = _teaclave("ListFunctions", "list_functions")
    DeleteFunction = _teaclave("DeleteFunction", "delete_function")
    DisableFunction = _teaclave("DisableFunction", "disable_function")
    CreateTask = _teaclave("CreateTask", "create_task")
    GetTask = _teaclave("GetTask", "get_task")
    AssignData = _teaclave("AssignData", "assign_data")
    ApproveTask = _teaclave("ApproveTask", "approve_task")
    InvokeTask = _teaclave("InvokeTask", "invoke_task")
    CancelTask = _teaclave("CancelTask", "cancel_task")
    QueryAuditLogs = _teaclave("QueryAuditLogs", "query_audit_logs")


class CloisterFrontendServicer(cgrpc.FrontendServicer):
    def __init__(self, forwarder: Forwarder) -> None:
        self._forwarder = forwarder

    async def SetFunctionRequirements(
        self, request: cpb.FunctionRequirementsRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        return await self._forwarder.forward(
            cgrpc.ManagementStub, "SetFunctionRequirements", "update_function", request, context, None
        )

    async def WaitTask(self, request: cpb.WaitTaskRequest, context: grpc.aio.ServicerContext) -> Any:
        deadline = long_poll_deadline(wait_seconds(request.timeout_ms))
        return await self._forwarder.forward(cgrpc.ManagementStub, "WaitTask", "get_task", request, context, deadline)

    async def RejectTask(self, request: cpb.RejectTaskRequest, context: grpc.aio.ServicerContext) -> Any:
        return await self._forwarder.forward(cgrpc.ManagementStub, "RejectTask", "reject_task", request, context, None)

    async def GetTaskReceipt(self, request: cpb.GetTaskReceiptRequest, context: grpc.aio.ServicerContext) -> Any:
        return await self._forwarder.forward(cgrpc.ManagementStub, "GetTaskReceipt", "get_task", request, context, None)

    async def ListTasks(self, request: cpb.ListTasksRequest, context: grpc.aio.ServicerContext) -> Any:
        return await self._forwarder.forward(cgrpc.ManagementStub, "ListTasks", "list_tasks", request, context, None)

    async def QueryAuditPage(self, request: cpb.QueryAuditPageRequest, context: grpc.aio.ServicerContext) -> Any:
        return await self._forwarder.forward(
            cgrpc.ManagementStub, "QueryAuditPage", "query_audit_logs", request, context, None
        )
