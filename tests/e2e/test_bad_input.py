"""Hostile and mistaken requests get the reference's status and a message saying what was wrong."""

from __future__ import annotations

import grpc
import pytest
from conftest import admin, login

from cloister._proto import teaclave_frontend_service_pb2 as fpb
from cloister.errors import (
    AccessDeniedError,
    AuthenticationError,
    FailedOperationError,
    InternalError,
    InvalidFunctionIdError,
    InvalidTaskIdError,
    ResourceExhaustedError,
    UnimplementedError,
    UserExistsError,
)
from cloister.sdk import FrontendService, FunctionArgument
from cloister.testing import RunningPlatform


def test_wrong_password_and_unknown_user(platform: RunningPlatform) -> None:
    root = admin(platform)
    with pytest.raises(AuthenticationError, match="authentication failed"):
        root.auth.user_login(platform.admin_user, "not the password")
    with pytest.raises(AuthenticationError, match="authentication failed"):
        root.auth.user_login("nobody", "x")
    with pytest.raises(UserExistsError, match="user id exist"):
        root.auth.user_register(platform.admin_user, "x", "PlatformAdmin", "")


def test_missing_and_forged_tokens(platform: RunningPlatform) -> None:
    client = FrontendService(*platform.connection_args("frontend"))
    client.metadata = {"id": platform.admin_user}
    with pytest.raises(AuthenticationError, match="missing token"):
        client.get_task("task-00000000-0000-0000-0000-000000000000")
    client.metadata = {"id": platform.admin_user, "token": "InvalidToken"}
    with pytest.raises(AuthenticationError, match="incorrent credential"):
        client.list_functions(platform.admin_user)
    root = admin(platform)
    other = dict(root.frontend.metadata or {})
    other["id"] = "someone-else"
    client.metadata = other
    with pytest.raises(AuthenticationError):
        client.list_functions("someone-else")


def test_role_not_allowed_by_policy(platform: RunningPlatform) -> None:
    root = admin(platform)
    root.auth.user_register("fowner", "fowner-password", "FunctionOwner", "")
    owner = login(platform, "fowner", "fowner-password")
    with pytest.raises(AccessDeniedError, match="permission denied"):
        owner.frontend.invoke_task("task-00000000-0000-0000-0000-000000000000")  # only data owners run tasks
    with pytest.raises(AccessDeniedError):
        owner.frontend.query_audit_logs("register_function", 10)


def test_malformed_ids_and_unknown_objects(platform: RunningPlatform) -> None:
    root = admin(platform)
    with pytest.raises(InvalidTaskIdError, match="invalid task id"):
        root.frontend.get_task("not-a-task")
    with pytest.raises(InvalidTaskIdError):
        root.frontend.get_task("task-00000000-0000-0000-0000-000000000000")
    with pytest.raises(InvalidFunctionIdError, match="invalid function id"):
        root.frontend.get_function("function-" + "z" * 36)
    with pytest.raises(InvalidTaskIdError):
        root.frontend.invoke_task("function-00000000-0000-0000-0000-000000000000")


def test_bad_arguments_and_states(platform: RunningPlatform) -> None:
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    with pytest.raises(InternalError):
        root.frontend.create_task(function_id, "{not json", "builtin")
    with pytest.raises(InternalError, match="Unsupported executor"):
        root.frontend.create_task(function_id, {"message": "x"}, "no-such-executor")
    with pytest.raises(Exception, match="invalid task"):
        root.frontend.create_task(function_id, {"message": "x", "extra": 1}, "builtin")
    with pytest.raises(InternalError, match="Invalid executor type"):
        root.frontend.register_function("f", "d", "cobol")
    task_id = root.frontend.create_task(function_id, {"message": "once"}, "builtin")
    root.frontend.invoke_task(task_id)
    root.frontend.get_task_result(task_id)
    with pytest.raises(FailedOperationError, match="failed to invoke task"):
        root.frontend.invoke_task(task_id)
    with pytest.raises(FailedOperationError, match="failed to cancel task"):
        root.frontend.cancel_task(task_id)
    with pytest.raises(InternalError, match="Invalid length"):
        root.frontend.register_input_file("http://example.com/a", "aes-gcm-128", bytes(16), bytes(12), b"short")
    with pytest.raises(InternalError, match="Invalid key length"):
        root.frontend.register_input_file("http://example.com/a", "aes-gcm-128", bytes(3), bytes(12), bytes(16))


def test_oversized_request_is_refused_and_service_keeps_working(platform: RunningPlatform) -> None:
    root = admin(platform)
    with pytest.raises(ResourceExhaustedError):
        root.frontend.register_function("big", "too big", "python", payload=bytes(5 * 1024 * 1024))
    assert root.frontend.list_functions(platform.admin_user) is not None


def test_unknown_method_is_unimplemented(platform: RunningPlatform) -> None:
    root = admin(platform)
    channel = root.frontend._channel.peer.connect()
    call = channel.unary_unary(
        "/teaclave_frontend_service_proto.TeaclaveFrontend/NoSuchMethod",
        request_serializer=fpb.GetTaskRequest.SerializeToString,
        response_deserializer=fpb.GetTaskResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(fpb.GetTaskRequest(task_id="x"), metadata=tuple((root.frontend.metadata or {}).items()))
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert UnimplementedError.status.value == 12


@pytest.mark.parametrize("service", ["frontend", "authentication"])
def test_every_method_survives_empty_garbage_and_bad_utf8(platform: RunningPlatform, service: str) -> None:
    """No request, however malformed, crashes a service or gets an unexplained internal error."""
    from cloister._proto import teaclave_authentication_service_pb2 as apb

    root = admin(platform)
    client = root.frontend if service == "frontend" else root.auth
    channel = client._channel.peer.connect()
    descriptor = (
        fpb.DESCRIPTOR.services_by_name["TeaclaveFrontend"]
        if service == "frontend"
        else apb.DESCRIPTOR.services_by_name["TeaclaveAuthenticationApi"]
    )
    metadata = tuple((root.frontend.metadata or {}).items())
    for method in descriptor.methods:
        call = channel.unary_unary(
            f"/{descriptor.full_name}/{method.name}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        # Empty, an invalid wire type, and a string field that is not UTF-8.
        for payload in (b"", b"\x0f" * 16, b"\x0a\x03\xff\xfe\xfd"):
            try:
                call(payload, metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                assert "incident" not in (error.details() or ""), f"{method.name}: {error.details()}"
                assert error.code() is not grpc.StatusCode.UNKNOWN or "Unexpected" not in (error.details() or "")
    assert root.frontend.list_functions(platform.admin_user) is not None
    assert root.auth.list_users(platform.admin_user)
