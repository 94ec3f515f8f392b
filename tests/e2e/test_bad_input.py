"""Hostile and mistaken requests get the reference's status and a message saying what was wrong; a
mistake in a field is INVALID_ARGUMENT naming the field, the value and what is valid (Teaclave: INTERNAL)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import grpc
import pytest
from conftest import admin, login

from cloister._proto import teaclave_frontend_service_pb2 as fpb
from cloister.errors import (
    AccessDeniedError,
    AuthenticationError,
    FailedOperationError,
    InvalidArgumentError,
    InvalidFunctionIdError,
    InvalidTaskIdError,
    ResourceExhaustedError,
    StatusCode,
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


KINDS = "builtin, python, wasm (also: mesapy, wamr)"


def _refused(call: Callable[[], object]) -> str:
    """The message of the INVALID_ARGUMENT refusal ``call`` gets (Teaclave answered INTERNAL)."""
    with pytest.raises(InvalidArgumentError) as refused:
        call()
    assert refused.value.status is StatusCode.INVALID_ARGUMENT
    assert "ExecutorKind" not in refused.value.message and "incident" not in refused.value.message
    return refused.value.message


def test_bad_arguments_and_states(platform: RunningPlatform) -> None:
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    assert _refused(lambda: root.frontend.create_task(function_id, "{not json", "builtin")).startswith(
        "function_arguments is not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"
    )
    assert _refused(lambda: root.frontend.create_task(function_id, {"message": "x"}, "no-such-executor")) == (
        f"executor 'no-such-executor' is not one of: {KINDS}"
    )
    assert _refused(lambda: root.frontend.create_task(function_id, {"message": "x", "extra": 1}, "builtin")) == (
        "invalid task: function_arguments has 'extra', which the function does not declare; "
        "its arguments a task sets: 'message'"
    )
    assert _refused(lambda: root.frontend.register_function("f", "d", "cobol")) == (
        f"executor_type 'cobol' is not one of: {KINDS}"
    )
    task_id = root.frontend.create_task(function_id, {"message": "once"}, "builtin")
    root.frontend.invoke_task(task_id)
    root.frontend.get_task_result(task_id)
    with pytest.raises(FailedOperationError, match="failed to invoke task"):
        root.frontend.invoke_task(task_id)
    with pytest.raises(FailedOperationError, match="failed to cancel task"):
        root.frontend.cancel_task(task_id)
    url = "http://example.com/a"
    assert _refused(lambda: root.frontend.register_input_file(url, "aes-gcm-128", bytes(16), bytes(12), b"short")) == (
        "cmac must be 16 bytes, got 5"
    )
    assert _refused(lambda: root.frontend.register_input_file(url, "aes-gcm-128", bytes(3), bytes(12), bytes(16))) == (
        "crypto_info.key must be 16 bytes for aes-gcm-128, got 3"
    )


def test_a_new_users_mistakes_are_refused_when_registered_or_created(platform: RunningPlatform) -> None:
    """The first hour's mistakes, through Teaclave's FrontendService: each is refused at once, naming the
    field, the value and what is valid, instead of failing a task later (or answering INTERNAL)."""
    frontend = admin(platform).frontend
    assert _refused(lambda: frontend.register_function("f", "", "pyhton")) == (
        f"executor_type 'pyhton' is not one of: {KINDS}"
    )
    assert _refused(lambda: frontend.register_function("builtin-ecko", "", "builtin")).startswith(
        "name 'builtin-ecko' is not one of: builtin-echo, builtin-face-detection, "
    )
    key, iv, cmac = bytes(16), bytes(12), bytes(16)
    assert _refused(lambda: frontend.register_input_file("http://h/a", "aes-gcm128", key, iv, cmac)) == (
        "crypto_info.schema 'aes-gcm128' is not one of: aes-gcm-128, aes-gcm-256, teaclave-file-128, raw"
    )
    assert _refused(lambda: frontend.register_input_file("input.enc", "aes-gcm-128", key, iv, cmac)) == (
        "url 'input.enc' is relative; give an absolute URL with a scheme, one of: http, https, data, fusion, file"
    )
    assert _refused(lambda: frontend.register_input_file("htps://h/a?sig=s3cret", "aes-gcm-128", key, iv, cmac)) == (
        "url scheme 'htps' is not one of: http, https, data, fusion, file"
    )
    assert _refused(lambda: frontend.register_output_file("data:text/plain;base64,YQ==", "aes-gcm-128", key, iv)) == (
        "url scheme 'data' is not one of: http, https, fusion, file; a data URL can be read, not written"
    )

    echo = frontend.register_function("builtin-echo", "", "builtin", arguments=[FunctionArgument("message")])
    assert _refused(lambda: frontend.create_task(echo, {}, "builtin")) == (
        "invalid task: function_arguments lacks 'message', which the function needs (no default)"
    )
    assert _refused(lambda: frontend.create_task(echo, {"message": "hi"}, "mesapy")) == (
        "executor 'mesapy' cannot run this function, whose executor_type is builtin; use executor builtin"
    )
    big = {"message": "x" * (3 * 1024 * 1024)}
    assert _refused(lambda: frontend.create_task(echo, big, "builtin")) == (
        f"function_arguments is {len(json.dumps(big))} bytes, over the limit of 2097152 bytes (2 MiB)"
    )
    # A Teaclave client's task, every overwritable argument given, runs as before.
    task_id = frontend.create_task(echo, {"message": "hi"}, "builtin")
    frontend.invoke_task(task_id)
    assert frontend.get_task_result(task_id) == b"hi"


def test_oversized_request_is_refused_and_service_keeps_working(platform: RunningPlatform) -> None:
    root = admin(platform)
    with pytest.raises(ResourceExhaustedError, match=r"larger than max .*\[rpc\] max_message_bytes"):
        root.frontend.register_function("big", "too big", "python", payload=bytes(5 * 1024 * 1024))
    # Under it, a payload of any size is taken (earlier versions refused more than 768 KiB).
    payload = b"def entrypoint(argv):\n    return 'ok'\n#" + b"x" * (1024 * 1024) + b"\n"
    function_id = root.frontend.register_function("big", "", "python", payload=payload)
    assert base64.b64decode(root.frontend.get_function(function_id)["payload"]) == payload
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
