"""Teaclave-compatible client classes: the names, constructors and methods of Teaclave's SDK.

A thin adapter over the Pythonic client's layers: requests go through the same
:class:`~cloister.sdk._channel.Channel` (attested, errors mapped once), and waiting for a
result is :meth:`TaskHandle.result`, so it never hangs on a task that cannot run. Each method
returns what Teaclave's ``teaclave.py`` was meant to return: ids as strings, an answer as the
dict ``MessageToDict`` makes with Teaclave's options (plus every field, so a new task's
``get_task(t)["status"]`` is there), nothing for an empty answer. ``docs/teaclave-sdk.md``
lists each difference from Teaclave's SDK.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_common_pb2 as compb
from cloister._proto import teaclave_frontend_service_pb2 as fpb
from cloister.attestation.report import AttestationPolicy
from cloister.errors import AuthenticationError, CloisterError
from cloister.model.tasks import TaskStatus
from cloister.rpc.convert.views import task_from_proto
from cloister.rpc.long_poll import long_poll_deadline
from cloister.sdk._channel import AUTHENTICATION_API, CLOISTER_FRONTEND, TEACLAVE_FRONTEND, AttestedChannel, Channel
from cloister.sdk._connection import open_peer
from cloister.sdk._functions import function_fields
from cloister.sdk._tasks import TaskHandle, check_runnable

TeaclaveException = CloisterError
"""Teaclave's SDK raised ``TeaclaveException``; here every error is a ``CloisterError``."""

_WAIT_SLICE_MS = 30_000

_S = TypeVar("_S", bound="_Service")


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


def _messages(items: list[Any] | None) -> list[Any]:
    return [getattr(item, "message", item) for item in items or []]


def _to_dict(message: Message) -> dict[str, Any]:
    """Teaclave's ``MessageToDict`` options, and every field even at its default (Teaclave's
    dropped them: a new task's status 0 was missing from ``get_task``)."""
    return MessageToDict(
        message,
        preserving_proto_field_name=True,
        use_integers_for_enums=True,
        always_print_fields_with_no_presence=True,
    )


class _Service:
    """One endpoint's channel, and the ``metadata`` (id and token) its calls carry.

    Teaclave shares a login by assignment (``frontend.metadata = auth.metadata``), so the
    metadata is read when each call is sent. No password is kept: an expired token is
    refused, as in Teaclave, and ``user_login`` again renews it.
    """

    _service_name: ClassVar[str] = ""
    _endpoint: ClassVar[str] = ""

    def __init__(
        self,
        address: tuple[str, int] | str,
        as_root_ca_cert_path: str | Path,
        enclave_info_path: str | Path,
        dump_report: bool = False,
        policy: AttestationPolicy | None = None,
    ) -> None:
        peer = open_peer(self._service_name, address, as_root_ca_cert_path, enclave_info_path, policy)
        self._channel: Channel = AttestedChannel(peer)
        self.metadata: dict[str, str] | None = None

    @classmethod
    def from_channel(cls: type[_S], channel: Channel) -> _S:
        """Over a channel of your own (SDK unit tests give a fake); the channel verifies, not this."""
        service = cls.__new__(cls)
        service._channel = channel
        service.metadata = None
        return service

    @property
    def attested_identity(self) -> Any:
        """What the service proved about itself when the connection was opened."""
        if not isinstance(self._channel, AttestedChannel):
            raise AttributeError("attested_identity: this object was made over a channel of its own")
        return self._channel.peer.peer_identity

    def _call(
        self,
        method: str,
        request: Message,
        *,
        service: str | None = None,
        anonymous: bool = False,
        timeout: float | None = None,
    ) -> Any:
        metadata = None
        if not anonymous:
            if not self.metadata:
                raise AuthenticationError("log in first: metadata (id and token) is not set")
            metadata = tuple(self.metadata.items())
        return self._channel.call(service or self._endpoint, method, request, timeout=timeout, metadata=metadata)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AuthenticationService(_Service):
    """The authentication API (port 7776)."""

    _service_name = "authentication"
    _endpoint = AUTHENTICATION_API

    def user_register(self, user_id: str, user_password: str, role: str = "", attribute: str = "") -> None:
        request = apb.UserRegisterRequest(id=user_id, password=user_password, role=role, attribute=attribute)
        self._call("UserRegister", request)

    def user_update(self, user_id: str, user_password: str, role: str, attribute: str = "") -> None:
        request = apb.UserUpdateRequest(id=user_id, password=user_password, role=role, attribute=attribute)
        self._call("UserUpdate", request)

    def user_login(self, user_id: str, user_password: str) -> str:
        """Log in; the token goes into ``metadata`` (give it to a ``FrontendService`` too) and is returned."""
        request = apb.UserLoginRequest(id=user_id, password=user_password)
        token: str = self._call("UserLogin", request, anonymous=True).token
        self.metadata = {"id": user_id, "token": token}
        return token

    def user_change_password(self, user_password: str) -> None:
        self._call("UserChangePassword", apb.UserChangePasswordRequest(password=user_password))

    def reset_user_password(self, user_id: str) -> str:
        """The new password (Teaclave's docstring; its code returned the response message)."""
        return str(self._call("ResetUserPassword", apb.ResetUserPasswordRequest(id=user_id)).password)

    def delete_user(self, user_id: str) -> None:
        self._call("DeleteUser", apb.DeleteUserRequest(id=user_id))

    def list_users(self, user_id: str) -> list[str]:
        """The ids of the users ``user_id`` manages (Teaclave's docstring: "User list")."""
        return list(self._call("ListUsers", apb.ListUsersRequest(id=user_id)).ids)


class FrontendService(_Service):
    """The frontend API (port 7777)."""

    _service_name = "frontend"
    _endpoint = TEACLAVE_FRONTEND

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
        fields = _fields(
            name, description, executor_type, public, payload, arguments, inputs, outputs, user_allowlist, usage_quota
        )
        return str(self._call("RegisterFunction", fpb.RegisterFunctionRequest(**fields)).function_id)

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
        fields = _fields(
            name, description, executor_type, public, payload, arguments, inputs, outputs, user_allowlist, usage_quota
        )
        request = fpb.UpdateFunctionRequest(function_id=function_id, **fields)
        return str(self._call("UpdateFunction", request).function_id)

    def set_function_requirements(self, function_id: str, labels: list[str]) -> None:
        """Cloister: run this function's tasks only on execution services offering all ``labels``."""
        request = cpb.FunctionRequirementsRequest(function_id=function_id, labels=labels)
        self._call("SetFunctionRequirements", request, service=CLOISTER_FRONTEND)

    def list_functions(self, user_id: str) -> dict[str, Any]:
        return _to_dict(self._call("ListFunctions", fpb.ListFunctionsRequest(user_id=user_id)))

    def get_function(self, function_id: str) -> dict[str, Any]:
        return _to_dict(self._call("GetFunction", fpb.GetFunctionRequest(function_id=function_id)))

    def get_function_usage_stats(self, function_id: str) -> dict[str, Any]:
        request = fpb.GetFunctionUsageStatsRequest(function_id=function_id)
        return _to_dict(self._call("GetFunctionUsageStats", request))

    def delete_function(self, function_id: str) -> None:
        self._call("DeleteFunction", fpb.DeleteFunctionRequest(function_id=function_id))

    def disable_function(self, function_id: str) -> None:
        self._call("DisableFunction", fpb.DisableFunctionRequest(function_id=function_id))

    # --- files -------------------------------------------------------------------------

    def register_input_file(
        self, url: str, schema: str, key: bytes | list[int], iv: bytes | list[int], cmac: bytes | list[int]
    ) -> str:
        request = fpb.RegisterInputFileRequest(
            url=url, cmac=bytes(cmac), crypto_info=CryptoInfo(schema, key, iv).message
        )
        return str(self._call("RegisterInputFile", request).data_id)

    def register_output_file(self, url: str, schema: str, key: bytes | list[int], iv: bytes | list[int]) -> str:
        request = fpb.RegisterOutputFileRequest(url=url, crypto_info=CryptoInfo(schema, key, iv).message)
        return str(self._call("RegisterOutputFile", request).data_id)

    def update_input_file(self, data_id: str, url: str) -> str:
        return str(self._call("UpdateInputFile", fpb.UpdateInputFileRequest(data_id=data_id, url=url)).data_id)

    def update_output_file(self, data_id: str, url: str) -> str:
        return str(self._call("UpdateOutputFile", fpb.UpdateOutputFileRequest(data_id=data_id, url=url)).data_id)

    def register_fusion_output(self, owners: list[str]) -> str:
        return str(self._call("RegisterFusionOutput", fpb.RegisterFusionOutputRequest(owner_list=owners)).data_id)

    def register_input_from_output(self, data_id: str) -> str:
        request = fpb.RegisterInputFromOutputRequest(data_id=data_id)
        return str(self._call("RegisterInputFromOutput", request).data_id)

    def get_input_file(self, data_id: str) -> dict[str, Any]:
        """``{"owner": [...], "cmac": <base64>}``."""
        return _to_dict(self._call("GetInputFile", fpb.GetInputFileRequest(data_id=data_id)))

    def get_output_file(self, data_id: str) -> dict[str, Any]:
        """``{"owner": [...], "cmac": <base64, empty until written>}``."""
        return _to_dict(self._call("GetOutputFile", fpb.GetOutputFileRequest(data_id=data_id)))

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
            inputs_ownership=_messages(inputs_ownership),
            outputs_ownership=_messages(outputs_ownership),
        )
        return str(self._call("CreateTask", request).task_id)

    def assign_data_to_task(
        self, task_id: str, inputs: list[DataMap] | None = None, outputs: list[DataMap] | None = None
    ) -> None:
        request = fpb.AssignDataRequest(task_id=task_id, inputs=_messages(inputs), outputs=_messages(outputs))
        self._call("AssignData", request)

    def approve_task(self, task_id: str) -> None:
        self._call("ApproveTask", fpb.ApproveTaskRequest(task_id=task_id))

    def invoke_task(self, task_id: str) -> None:
        self._call("InvokeTask", fpb.InvokeTaskRequest(task_id=task_id))

    def cancel_task(self, task_id: str) -> None:
        self._call("CancelTask", fpb.CancelTaskRequest(task_id=task_id))

    def get_task(self, task_id: str) -> dict[str, Any]:
        """The task as a dict with every field: ``status`` (an int) and ``result`` (``{}`` until it ends)."""
        return _to_dict(self._call("GetTask", fpb.GetTaskRequest(task_id=task_id)))

    def wait_task(self, task_id: str, timeout: float | None = None) -> fpb.GetTaskResponse:
        """Cloister: the task once it has ended (or, with ``timeout``, when that passes); no polling.

        Raises:
            TaskNotReadyError: without a ``timeout``, at once when the task cannot run as it
                stands (not invoked, or no execution service can run it), as
                :meth:`get_task_result` does.
        """
        if timeout is not None:
            return self._wait_slice(task_id, int(min(timeout * 1000, _WAIT_SLICE_MS)))
        task = self._wait_slice(task_id, _WAIT_SLICE_MS, return_if_stuck=True)  # at once if it cannot run
        while not TaskStatus(task.status).is_ended:
            check_runnable(task_from_proto(task), waiting_is_final=True)
            task = self._wait_slice(task_id, _WAIT_SLICE_MS)
        return task

    def _wait_slice(self, task_id: str, slice_ms: int, return_if_stuck: bool = False) -> fpb.GetTaskResponse:
        request = cpb.WaitTaskRequest(task_id=task_id, timeout_ms=slice_ms, return_if_stuck=return_if_stuck)
        return self._call("WaitTask", request, service=CLOISTER_FRONTEND, timeout=long_poll_deadline(slice_ms / 1000))  # type: ignore[no-any-return]

    def get_task_result(self, task_id: str, timeout: float | None = None) -> bytes:
        """The function's return value once the task finishes.

        Args:
            timeout: seconds to wait at most; None waits as long as the task can still run.

        Raises:
            TaskNotReadyError: at once, when the task cannot run (not invoked: the approvals
                and data missing; or, without a ``timeout``, no execution service can run it).
            TaskFailedError: the function or its data failed (``ExecutorLostError`` when its
                execution service stopped answering).
            TaskCancelledError: a participant cancelled the task.
            TimeoutError: ``timeout`` seconds passed first.
        """
        return TaskHandle(_Frontend(self), task_id).result(timeout).return_value

    def get_output_cmac_by_tag(self, task_id: str, tag: str) -> bytes:
        """The tag of output ``tag`` once the task finishes; the errors of :meth:`get_task_result`."""
        return TaskHandle(_Frontend(self), task_id).result().output_tags[tag]

    def query_audit_logs(self, query: str, limit: int) -> dict[str, Any]:
        """``{"logs": [entry, ...]}``, newest first; each entry's ``microsecond`` is a string and ``ip``
        base64, as ``MessageToDict`` writes int64 and bytes."""
        return _to_dict(self._call("QueryAuditLogs", fpb.QueryAuditLogsRequest(query=query, limit=limit)))


class _Frontend:
    """A :class:`FrontendService` as the caller a :class:`TaskHandle` takes: calls carry its metadata."""

    def __init__(self, service: FrontendService) -> None:
        self._service = service

    def frontend(
        self, method: str, request: Message, *, service: str = TEACLAVE_FRONTEND, timeout: float | None = None
    ) -> Any:
        return self._service._call(method, request, service=service, timeout=timeout)


def _fields(
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
    """RegisterFunction's and UpdateFunction's fields, from Teaclave's argument order."""
    return function_fields(
        name,
        executor_type,
        description,
        bytes(payload),
        arguments or [],
        inputs or [],
        outputs or [],
        public,
        user_allowlist or [],
        usage_quota,
    )
