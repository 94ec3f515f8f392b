"""Errors map once, from the status table, to the most specific class, chained from the gRPC error."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.config import RPCSettings
from cloister.errors import (
    AccessDeniedError,
    AuthenticationError,
    CloisterError,
    ConflictError,
    DeadlineExceededError,
    DiskFullError,
    FailedOperationError,
    FileIntegrityError,
    InternalError,
    InvalidArgumentError,
    InvalidDataIdError,
    InvalidFunctionIdError,
    InvalidTaskIdError,
    NotFoundError,
    ResourceExhaustedError,
    StatusCode,
    UnavailableError,
    UnimplementedError,
    UserExistsError,
)
from cloister.rpc.channel import SyncPeer
from cloister.rpc.server import ANSWERED_BY
from cloister.sdk import _channel
from cloister.sdk._channel import TEACLAVE_FRONTEND, AttestedChannel

MOST_SPECIFIC: dict[StatusCode, type[CloisterError]] = {
    StatusCode.CANCELLED: CloisterError,
    StatusCode.UNKNOWN: FailedOperationError,
    StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    StatusCode.NOT_FOUND: NotFoundError,
    StatusCode.ALREADY_EXISTS: CloisterError,
    StatusCode.PERMISSION_DENIED: AccessDeniedError,
    StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    StatusCode.FAILED_PRECONDITION: CloisterError,
    StatusCode.ABORTED: ConflictError,
    StatusCode.OUT_OF_RANGE: CloisterError,
    StatusCode.UNIMPLEMENTED: UnimplementedError,
    StatusCode.INTERNAL: InternalError,
    StatusCode.UNAVAILABLE: UnavailableError,
    StatusCode.DATA_LOSS: FileIntegrityError,
    StatusCode.UNAUTHENTICATED: AuthenticationError,
}
"""Every status a call can fail with, and the class the client raises for it."""

BY_MESSAGE = [
    (StatusCode.INVALID_ARGUMENT, "invalid task id", InvalidTaskIdError),
    (StatusCode.INVALID_ARGUMENT, "invalid function id", InvalidFunctionIdError),
    (StatusCode.INVALID_ARGUMENT, "invalid data id", InvalidDataIdError),
    (StatusCode.RESOURCE_EXHAUSTED, DiskFullError.of("storage").message, DiskFullError),
    # The authentication API answers every refusal UNAUTHENTICATED; only a bad login stays one.
    (StatusCode.UNAUTHENTICATED, "user id exist", UserExistsError),
    (StatusCode.UNAUTHENTICATED, "permission denied", AccessDeniedError),
    (StatusCode.UNAUTHENTICATED, "invalid role", InvalidArgumentError),
    (StatusCode.UNAUTHENTICATED, "invalid user id", InvalidArgumentError),
    (StatusCode.UNAUTHENTICATED, "service internal error", InternalError),
    (StatusCode.UNAUTHENTICATED, "authentication failed", AuthenticationError),
]


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((ANSWERED_BY, "frontend"),)  # a service's own answer, not a broken connection


def _failing_stub(error: grpc.RpcError) -> type:
    class Stub:
        def __init__(self, channel: Any) -> None:
            pass

        def GetTask(self, request: Any, **_: Any) -> Any:
            raise error

    return Stub


def _channel_raising(error: grpc.RpcError, monkeypatch: pytest.MonkeyPatch) -> AttestedChannel:
    peer = SyncPeer("frontend", "127.0.0.1:1", None, None, RPCSettings())  # type: ignore[arg-type]
    peer._channel = object()  # type: ignore[assignment]  # connected: no network in a unit test
    monkeypatch.setitem(_channel._STUBS, TEACLAVE_FRONTEND, _failing_stub(error))
    return AttestedChannel(peer)


def test_the_table_covers_every_failure_status() -> None:
    assert set(MOST_SPECIFIC) == set(StatusCode) - {StatusCode.OK}


@pytest.mark.parametrize("status", sorted(MOST_SPECIFIC))
def test_each_status_maps_to_its_most_specific_class(status: StatusCode, monkeypatch: pytest.MonkeyPatch) -> None:
    rpc_error = _RpcError(grpc.StatusCode[status.name], "what went wrong")
    channel = _channel_raising(rpc_error, monkeypatch)
    with pytest.raises(CloisterError) as caught:
        channel.call(TEACLAVE_FRONTEND, "GetTask", fe_pb.GetTaskRequest(task_id="task-1"))
    assert type(caught.value) is MOST_SPECIFIC[status]
    assert caught.value.status is status
    assert caught.value.message == "what went wrong"
    assert caught.value.__cause__ is rpc_error


@pytest.mark.parametrize(("status", "message", "error"), BY_MESSAGE)
def test_messages_the_reference_fixes_pick_a_subclass(
    status: StatusCode, message: str, error: type[CloisterError], monkeypatch: pytest.MonkeyPatch
) -> None:
    rpc_error = _RpcError(grpc.StatusCode[status.name], message)
    channel = _channel_raising(rpc_error, monkeypatch)
    with pytest.raises(error) as caught:
        channel.call(TEACLAVE_FRONTEND, "GetTask", fe_pb.GetTaskRequest())
    assert type(caught.value) is error and caught.value.__cause__ is rpc_error
    assert caught.value.status is status, "relayed on, it keeps the code it arrived with"


def test_an_unknown_service_is_refused_before_sending() -> None:
    peer = SyncPeer("frontend", "127.0.0.1:1", None, None, RPCSettings())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="unknown service"):
        AttestedChannel(peer).call("Nope", "GetTask", fe_pb.GetTaskRequest())
