"""Management RPCs: read the caller from metadata, decode, call the logic, encode.

No decision is taken here: the domain modules ask the access control service. The frontend
forwards ``id`` (every RPC but SaveLogs) and ``role``; the reference requires ``role`` only on
the RPCs whose rules depend on it (§2.4), and elsewhere a missing one reads as ``Invalid``.
"""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import empty_pb2

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister._proto import teaclave_management_service_pb2 as mpb
from cloister._proto import teaclave_management_service_pb2_grpc as mgrpc
from cloister.model.access import Subject
from cloister.model.roles import Role
from cloister.rpc.audit_trail import spool_position
from cloister.rpc.convert import files as file_convert
from cloister.rpc.convert import functions as function_convert
from cloister.rpc.convert import tasks as task_convert
from cloister.rpc.convert.audit import entry_from_proto, entry_to_proto, page_to_proto
from cloister.rpc.convert.limits import check_count
from cloister.rpc.metadata import Caller
from cloister.services.management.audit import AuditLog
from cloister.services.management.files import FileService
from cloister.services.management.functions import FunctionService, FunctionView
from cloister.services.management.task_index import page_token, parse_page_token
from cloister.services.management.tasks import TaskService

_EMPTY = empty_pb2.Empty()
_MAX_AUDIT_ENTRIES = 100_000
_PAGE_BYTES = 3 * 1024 * 1024
"""A ListTasks page ends early rather than outgrow the 4 MiB a public answer may have (a task's
arguments alone may take 2 MiB); its token then continues after the last task sent."""


def _user(context: grpc.aio.ServicerContext) -> Subject:
    """The caller, for an RPC where the reference does not require ``role``."""
    return _subject(context, role_required=False)


def _user_and_role(context: grpc.aio.ServicerContext) -> Subject:
    return _subject(context, role_required=True)


def _subject(context: grpc.aio.ServicerContext, role_required: bool) -> Subject:
    caller = Caller.from_metadata(context.invocation_metadata())
    user_id = caller.require_user_id()
    role = caller.require_role() if role_required else caller.role or ""
    return Subject(user_id, Role.parse(role))


class ManagementServicer(mgrpc.TeaclaveManagementServicer):
    def __init__(self, functions: FunctionService, files: FileService, tasks: TaskService, audit: AuditLog) -> None:
        self._functions = functions
        self._files = files
        self._tasks = tasks
        self._audit = audit

    @property
    def audit(self) -> AuditLog:
        return self._audit

    @property
    def functions(self) -> FunctionService:
        return self._functions

    # --- files ---------------------------------------------------------------------------

    async def RegisterInputFile(
        self, request: fe_pb.RegisterInputFileRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.RegisterInputFileResponse:
        subject = _user(context)
        file = file_convert.input_file_from_register_request(request, subject.user_id, uuid.uuid4())
        return fe_pb.RegisterInputFileResponse(data_id=await self._files.register(subject, file))

    async def RegisterOutputFile(
        self, request: fe_pb.RegisterOutputFileRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.RegisterOutputFileResponse:
        subject = _user(context)
        file = file_convert.output_file_from_register_request(request, subject.user_id, uuid.uuid4())
        return fe_pb.RegisterOutputFileResponse(data_id=await self._files.register(subject, file))

    async def UpdateInputFile(
        self, request: fe_pb.UpdateInputFileRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.UpdateInputFileResponse:
        data_id = await self._files.update_input(_user(context), request.data_id, request.url)
        return fe_pb.UpdateInputFileResponse(data_id=data_id)

    async def UpdateOutputFile(
        self, request: fe_pb.UpdateOutputFileRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.UpdateOutputFileResponse:
        data_id = await self._files.update_output(_user(context), request.data_id, request.url)
        return fe_pb.UpdateOutputFileResponse(data_id=data_id)

    async def RegisterFusionOutput(
        self, request: fe_pb.RegisterFusionOutputRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.RegisterFusionOutputResponse:
        data_id = await self._files.register_fusion_output(_user(context), list(request.owner_list))
        return fe_pb.RegisterFusionOutputResponse(data_id=data_id)

    async def RegisterInputFromOutput(
        self, request: fe_pb.RegisterInputFromOutputRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.RegisterInputFromOutputResponse:
        data_id = await self._files.register_input_from_output(_user(context), request.data_id)
        return fe_pb.RegisterInputFromOutputResponse(data_id=data_id)

    async def GetOutputFile(
        self, request: fe_pb.GetOutputFileRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.GetOutputFileResponse:
        file = await self._files.get_output(_user(context), request.data_id)
        return file_convert.output_file_to_get_response(file)

    async def GetInputFile(
        self, request: fe_pb.GetInputFileRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.GetInputFileResponse:
        file = await self._files.get_input(_user(context), request.data_id)
        return file_convert.input_file_to_get_response(file)

    # --- functions -----------------------------------------------------------------------

    async def RegisterFunction(
        self, request: fe_pb.RegisterFunctionRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.RegisterFunctionResponse:
        function = function_convert.function_from_register_request(request, _user(context).user_id, uuid.uuid4())
        return fe_pb.RegisterFunctionResponse(function_id=await self._functions.register(function))

    async def UpdateFunction(
        self, request: fe_pb.UpdateFunctionRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.UpdateFunctionResponse:
        subject = _user(context)
        function = function_convert.function_from_update_request(request, subject.user_id)
        return fe_pb.UpdateFunctionResponse(function_id=await self._functions.update(subject, function))

    async def GetFunction(
        self, request: fe_pb.GetFunctionRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.GetFunctionResponse:
        function, view = await self._functions.get(_user_and_role(context), request.function_id)
        if view is FunctionView.REDACTED:
            return function_convert.function_to_get_response(function, b"", redacted=True)
        payload = await self._functions.payload(function)
        return function_convert.function_to_get_response(function, payload, redacted=False)

    async def GetFunctionUsageStats(
        self, request: fe_pb.GetFunctionUsageStatsRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.GetFunctionUsageStatsResponse:
        quota, used = await self._functions.usage_stats(_user_and_role(context), request.function_id)
        return function_convert.usage_stats_to_response(quota, used)

    async def DeleteFunction(
        self, request: fe_pb.DeleteFunctionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._functions.delete(_user(context), request.function_id)
        return _EMPTY

    async def DisableFunction(
        self, request: fe_pb.DisableFunctionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._functions.disable(_user_and_role(context), request.function_id)
        return _EMPTY

    async def ListFunctions(
        self, request: fe_pb.ListFunctionsRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.ListFunctionsResponse:
        registered, allowed = await self._functions.list_functions(_user_and_role(context), request.user_id)
        return function_convert.function_lists_to_response(registered, allowed)

    # --- tasks ---------------------------------------------------------------------------

    async def CreateTask(
        self, request: fe_pb.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.CreateTaskResponse:
        task_id = await self._tasks.create(
            _user_and_role(context),
            function_id=request.function_id,
            arguments_json=request.function_arguments,
            executor=request.executor,
            inputs_ownership=task_convert.owners_from_proto(request.inputs_ownership, "inputs_ownership"),
            outputs_ownership=task_convert.owners_from_proto(request.outputs_ownership, "outputs_ownership"),
        )
        return fe_pb.CreateTaskResponse(task_id=task_id)

    async def GetTask(self, request: fe_pb.GetTaskRequest, context: grpc.aio.ServicerContext) -> fe_pb.GetTaskResponse:
        task = await self._tasks.get(_user(context), request.task_id)
        return task_convert.task_to_get_response(task)

    async def AssignData(self, request: fe_pb.AssignDataRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._tasks.assign_data(
            _user(context),
            request.task_id,
            task_convert.data_maps_from_proto(request.inputs, "inputs"),
            task_convert.data_maps_from_proto(request.outputs, "outputs"),
        )
        return _EMPTY

    async def ApproveTask(
        self, request: fe_pb.ApproveTaskRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._tasks.approve(_user(context), request.task_id)
        return _EMPTY

    async def InvokeTask(self, request: fe_pb.InvokeTaskRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._tasks.invoke(_user(context), request.task_id)
        return _EMPTY

    async def CancelTask(self, request: fe_pb.CancelTaskRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._tasks.cancel(_user_and_role(context), request.task_id)
        return _EMPTY

    # --- audit ---------------------------------------------------------------------------

    async def SaveLogs(self, request: mpb.SaveLogsRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        check_count(request.logs, "audit entries", _MAX_AUDIT_ENTRIES)
        source = spool_position(context.invocation_metadata())
        await self._audit.save([entry_from_proto(e) for e in request.logs], source)
        return _EMPTY

    async def QueryAuditLogs(
        self, request: fe_pb.QueryAuditLogsRequest, context: grpc.aio.ServicerContext
    ) -> fe_pb.QueryAuditLogsResponse:
        entries = await self._audit.query(_user_and_role(context), request.query, request.limit)
        return fe_pb.QueryAuditLogsResponse(logs=[entry_to_proto(e) for e in entries])


class CloisterManagementServicer(cgrpc.ManagementServicer):
    """Cloister's extensions: wait for a task to end (woken by storage), list one's tasks,
    function requirements, and the audit log a page at a time."""

    def __init__(self, tasks: TaskService, functions: FunctionService, audit: AuditLog) -> None:
        self._tasks = tasks
        self._functions = functions
        self._audit = audit

    async def QueryAuditPage(
        self, request: cpb.QueryAuditPageRequest, context: grpc.aio.ServicerContext
    ) -> cpb.QueryAuditPageResponse:
        page = await self._audit.query_page(_user_and_role(context), request.query, request.limit, request.after)
        return page_to_proto(page)

    async def SetFunctionRequirements(
        self, request: cpb.FunctionRequirementsRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._functions.set_requirements(_user(context), request.function_id, list(request.labels))
        return _EMPTY

    async def WaitTask(self, request: cpb.WaitTaskRequest, context: grpc.aio.ServicerContext) -> fe_pb.GetTaskResponse:
        task = await self._tasks.wait(_user(context), request.task_id, request.timeout_ms, request.return_if_stuck)
        return task_convert.task_to_get_response(task)

    async def RejectTask(self, request: cpb.RejectTaskRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._tasks.reject(_user(context), request.task_id)
        return _EMPTY

    async def GetTaskReceipt(
        self, request: cpb.GetTaskReceiptRequest, context: grpc.aio.ServicerContext
    ) -> cpb.GetTaskReceiptResponse:
        task = await self._tasks.manifest(_user(context), request.task_id)  # GetTask's rule: participants only
        return cpb.GetTaskReceiptResponse(
            receipt=task.receipt or "", manifest=task.manifest or b"", history=task_convert.history_to_proto(task)
        )

    async def ListTasks(
        self, request: cpb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ListTasksResponse:
        subject = _user(context)
        page, more = await self._tasks.list_tasks(
            subject,
            statuses=task_convert.statuses_from_proto(request.statuses),
            awaiting_approval=request.awaiting_my_approval,
            page_size=task_convert.page_size(request.page_size),
            after=parse_page_token(request.page_token),
        )
        response = cpb.ListTasksResponse()
        size, last = 0, None
        for index, (at, task) in enumerate(page):
            message = task_convert.task_to_get_response(task)
            size += message.ByteSize() + 8
            if index > 0 and size > _PAGE_BYTES:
                more = True
                break
            response.tasks.append(message)
            last = at
        if more and last is not None:
            response.next_page_token = page_token(last)
        return response
