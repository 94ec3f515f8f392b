"""Teaclave-compatible client classes: the names, constructors and methods of Teaclave's SDK.

Scripts written for ``teaclave.py`` run unchanged, minus its bugs: every method calls the RPC
its name says, ``update_function`` and ``user_update`` work, and waiting for a result is
notified by the server (``WaitTask``) rather than polled every second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_authentication_service_pb2_grpc as agrpc
from cloister._proto import teaclave_common_pb2 as compb
from cloister._proto import teaclave_frontend_service_pb2 as fpb
from cloister._proto import teaclave_frontend_service_pb2_grpc as fgrpc
from cloister.attestation.report import AttestationPolicy
from cloister.errors import CloisterError
from cloister.model.tasks import TaskStatus
from cloister.rpc.convert.views import task_from_proto
from cloister.sdk._connection import open_peer
from cloister.sdk._tasks import outcome_error

TeaclaveException = CloisterError
"""Teaclave's SDK raised ``TeaclaveException``; here every error is a ``CloisterError``."""

_WAIT_SLICE_MS = 30_000


class FunctionInput:
    def __init__(self, name: str, description: str = "", optional: bool = False) -> None:
        self.message = fpb.FunctionInput(name=name, description=description, optional=optional)


class FunctionOutput:
    def __init__(self, name: str, description: str = "", optional: bool = False) -> None:
        self.message = fpb.FunctionOutput(name=name, description=description, optional=optional)


class FunctionArgument:
    def __init__(self, key: str, default_value: str = "", allow_overwrite: bool = True) -> None:
        self.message = fpb.FunctionArgument(key=key, default_value=default_value, allow_overwrite=allow_overwrite)


class OwnerList:
    def __init__(self, data_name: str, uids: list[str]) -> None:
        self.message = fpb.OwnerList(data_name=data_name, uids=uids)


class DataMap:
    def __init__(self, data_name: str, data_id: str) -> None:
        self.message = fpb.DataMap(data_name=data_name, data_id=data_id)


class CryptoInfo:
    def __init__(self, schema: str, key: bytes | list[int], iv: bytes | list[int]) -> None:
        self.message = compb.FileCryptoInfo(schema=schema, key=bytes(key), iv=bytes(iv))


def _messages(items: list[Any]) -> list[Any]:
    return [getattr(item, "message", item) for item in items]


class _Service:
    _service_name = ""

    def __init__(
        self,
        address: tuple[str, int] | str,
        as_root_ca_cert_path: str | Path,
        enclave_info_path: str | Path,
        dump_report: bool = False,
        policy: AttestationPolicy | None = None,
    ) -> None:
        self._peer = open_peer(self._service_name, address, as_root_ca_cert_path, enclave_info_path, policy)
        self.metadata: dict[str, str] | None = None

    @property
    def attested_identity(self) -> Any:
        """What the service proved about itself when the connection was opened."""
        return self._peer.peer_identity

    def _call(self, stub: type, method: str, request: Any, *, anonymous: bool = False, timeout: float | None = None):
        if not anonymous and not self.metadata:
            raise CloisterError("log in first: metadata (id and token) is not set")
        metadata = None if anonymous else tuple(self.metadata.items())  # type: ignore[union-attr]
        return self._peer.call(stub, method, request, metadata=metadata, timeout=timeout)

    def close(self) -> None:
        self._peer.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AuthenticationService(_Service):
    """The authentication API (port 7776)."""

    _service_name = "authentication"

    def _api(self, method: str, request: Any, anonymous: bool = False) -> Any:
        return self._call(agrpc.TeaclaveAuthenticationApiStub, method, request, anonymous=anonymous)

    def user_register(self, user_id: str, user_password: str, role: str = "", attribute: str = "") -> None:
        self._api(
            "UserRegister", apb.UserRegisterRequest(id=user_id, password=user_password, role=role, attribute=attribute)
        )

    def user_update(self, user_id: str, user_password: str, role: str, attribute: str = "") -> None:
        self._api(
            "UserUpdate", apb.UserUpdateRequest(id=user_id, password=user_password, role=role, attribute=attribute)
        )

    def user_login(self, user_id: str, user_password: str) -> str:
        response = self._api("UserLogin", apb.UserLoginRequest(id=user_id, password=user_password), anonymous=True)
        self.metadata = {"id": user_id, "token": response.token}
        return response.token

    def user_change_password(self, user_password: str) -> None:
        self._api("UserChangePassword", apb.UserChangePasswordRequest(password=user_password))

    def reset_user_password(self, user_id: str) -> str:
        return self._api("ResetUserPassword", apb.ResetUserPasswordRequest(id=user_id)).password

    def delete_user(self, user_id: str) -> None:
        self._api("DeleteUser", apb.DeleteUserRequest(id=user_id))

    def list_users(self, user_id: str) -> list[str]:
        return list(self._api("ListUsers", apb.ListUsersRequest(id=user_id)).ids)


class FrontendService(_Service):
    """The frontend API (port 7777)."""

    _service_name = "frontend"

    def _api(self, method: str, request: Any) -> Any:
        return self._call(fgrpc.TeaclaveFrontendStub, method, request)

    # --- functions ---------------------------------------------------------------------

    def register_function(
        self,
        name: str,
        description: str,
        executor_type: str,
        public: bool = True,
        payload: bytes | list[int] = b"",
        arguments: list[FunctionArgument] | None = None,
        inputs: list[FunctionInput] | None = None,
        outputs: list[FunctionOutput] | None = None,
        user_allowlist: list[str] | None = None,
        usage_quota: int = -1,
    ) -> str:
        fields = _function_fields(
            name, description, executor_type, public, payload, arguments, inputs, outputs, user_allowlist, usage_quota
        )
        return self._api("RegisterFunction", fpb.RegisterFunctionRequest(**fields)).function_id

    def update_function(
        self,
        function_id: str,
        name: str,
        description: str,
        executor_type: str,
        public: bool = True,
        payload: bytes | list[int] = b"",
        arguments: list[FunctionArgument] | None = None,
        inputs: list[FunctionInput] | None = None,
        outputs: list[FunctionOutput] | None = None,
        user_allowlist: list[str] | None = None,
        usage_quota: int = -1,
    ) -> str:
        fields = _function_fields(
            name, description, executor_type, public, payload, arguments, inputs, outputs, user_allowlist, usage_quota
        )
        return self._api("UpdateFunction", fpb.UpdateFunctionRequest(function_id=function_id, **fields)).function_id

    def set_function_requirements(self, function_id: str, labels: list[str]) -> None:
        """Cloister: run this function's tasks only on execution services offering all ``labels``."""
        request = cpb.FunctionRequirementsRequest(function_id=function_id, labels=labels)
        self._call(cgrpc.FrontendStub, "SetFunctionRequirements", request)

    def list_functions(self, user_id: str) -> dict[str, Any]:
        return _to_dict(self._api("ListFunctions", fpb.ListFunctionsRequest(user_id=user_id)))

    def get_function(self, function_id: str) -> fpb.GetFunctionResponse:
        return self._api("GetFunction", fpb.GetFunctionRequest(function_id=function_id))

    def get_function_usage_stats(self, function_id: str) -> fpb.GetFunctionUsageStatsResponse:
        return self._api("GetFunctionUsageStats", fpb.GetFunctionUsageStatsRequest(function_id=function_id))

    def delete_function(self, function_id: str) -> None:
        self._api("DeleteFunction", fpb.DeleteFunctionRequest(function_id=function_id))

    def disable_function(self, function_id: str) -> None:
        self._api("DisableFunction", fpb.DisableFunctionRequest(function_id=function_id))

    # --- files -------------------------------------------------------------------------

    def register_input_file(
        self, url: str, schema: str, key: bytes | list[int], iv: bytes | list[int], cmac: bytes | list[int]
    ) -> str:
        request = fpb.RegisterInputFileRequest(
            url=url, cmac=bytes(cmac), crypto_info=CryptoInfo(schema, key, iv).message
        )
        return self._api("RegisterInputFile", request).data_id

    def register_output_file(self, url: str, schema: str, key: bytes | list[int], iv: bytes | list[int]) -> str:
        request = fpb.RegisterOutputFileRequest(url=url, crypto_info=CryptoInfo(schema, key, iv).message)
        return self._api("RegisterOutputFile", request).data_id

    def update_input_file(self, data_id: str, url: str) -> str:
        return self._api("UpdateInputFile", fpb.UpdateInputFileRequest(data_id=data_id, url=url)).data_id

    def update_output_file(self, data_id: str, url: str) -> str:
        return self._api("UpdateOutputFile", fpb.UpdateOutputFileRequest(data_id=data_id, url=url)).data_id

    def register_fusion_output(self, owners: list[str]) -> str:
        return self._api("RegisterFusionOutput", fpb.RegisterFusionOutputRequest(owner_list=owners)).data_id

    def register_input_from_output(self, data_id: str) -> str:
        return self._api("RegisterInputFromOutput", fpb.RegisterInputFromOutputRequest(data_id=data_id)).data_id

    def get_input_file(self, data_id: str) -> fpb.GetInputFileResponse:
        return self._api("GetInputFile", fpb.GetInputFileRequest(data_id=data_id))

    def get_output_file(self, data_id: str) -> fpb.GetOutputFileResponse:
        return self._api("GetOutputFile", fpb.GetOutputFileRequest(data_id=data_id))

    # --- tasks -------------------------------------------------------------------------

    def create_task(
        self,
        function_id: str,
        function_arguments: dict[str, Any] | str,
        executor: str,
        inputs_ownership: list[OwnerList] | None = None,
        outputs_ownership: list[OwnerList] | None = None,
    ) -> str:
        arguments = function_arguments if isinstance(function_arguments, str) else json.dumps(function_arguments)
        request = fpb.CreateTaskRequest(
            function_id=function_id,
            function_arguments=arguments,
            executor=executor,
            inputs_ownership=_messages(inputs_ownership or []),
            outputs_ownership=_messages(outputs_ownership or []),
        )
        return self._api("CreateTask", request).task_id

    def assign_data_to_task(
        self, task_id: str, inputs: list[DataMap] | None = None, outputs: list[DataMap] | None = None
    ) -> None:
        request = fpb.AssignDataRequest(
            task_id=task_id, inputs=_messages(inputs or []), outputs=_messages(outputs or [])
        )
        self._api("AssignData", request)

    def approve_task(self, task_id: str) -> None:
        self._api("ApproveTask", fpb.ApproveTaskRequest(task_id=task_id))

    def invoke_task(self, task_id: str) -> None:
        self._api("InvokeTask", fpb.InvokeTaskRequest(task_id=task_id))

    def cancel_task(self, task_id: str) -> None:
        self._api("CancelTask", fpb.CancelTaskRequest(task_id=task_id))

    def get_task(self, task_id: str) -> dict[str, Any]:
        return _to_dict(self._api("GetTask", fpb.GetTaskRequest(task_id=task_id)))

    def wait_task(self, task_id: str, timeout: float | None = None) -> fpb.GetTaskResponse:
        """The task once it has ended (or, with ``timeout``, when that passes); no polling."""
        slice_ms = _WAIT_SLICE_MS if timeout is None else int(min(timeout * 1000, _WAIT_SLICE_MS))
        while True:
            request = cpb.WaitTaskRequest(task_id=task_id, timeout_ms=slice_ms)
            task = self._call(cgrpc.FrontendStub, "WaitTask", request, timeout=slice_ms / 1000 + 15)
            if TaskStatus(task.status).is_ended or timeout is not None:
                return task

    def get_task_result(self, task_id: str) -> bytes:
        """The function's return value once the task finishes.

        Raises:
            TaskFailedError: the function or its data failed (``ExecutorLostError`` when its
                execution service stopped answering).
            TaskCancelledError: a participant cancelled the task.
        """
        return self._finished(task_id).result.Ok.return_value

    def get_output_cmac_by_tag(self, task_id: str, tag: str) -> bytes:
        return self._finished(task_id).result.Ok.tags_map[tag]

    def _finished(self, task_id: str) -> fpb.GetTaskResponse:
        """The task once it has finished; the errors of :meth:`get_task_result` otherwise."""
        task = self.wait_task(task_id)
        if TaskStatus(task.status) is TaskStatus.FINISHED and task.result.HasField("Ok"):
            return task
        raise outcome_error(task_from_proto(task))

    def query_audit_logs(self, query: str, limit: int) -> list[compb.Entry]:
        return list(self._api("QueryAuditLogs", fpb.QueryAuditLogsRequest(query=query, limit=limit)).logs)


def _function_fields(
    name: str,
    description: str,
    executor_type: str,
    public: bool,
    payload: bytes | list[int],
    arguments: list[FunctionArgument] | None,
    inputs: list[FunctionInput] | None,
    outputs: list[FunctionOutput] | None,
    user_allowlist: list[str] | None,
    usage_quota: int,
) -> dict[str, Any]:
    """The fields RegisterFunction and UpdateFunction share, as protobuf keyword arguments."""
    return {
        "name": name,
        "description": description,
        "executor_type": executor_type,
        "public": public,
        "payload": bytes(payload),
        "arguments": _messages(arguments or []),
        "inputs": _messages(inputs or []),
        "outputs": _messages(outputs or []),
        "user_allowlist": user_allowlist or [],
        "usage_quota": usage_quota,
    }


def _to_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, use_integers_for_enums=True)
