"""A stand-in :class:`cloister.sdk.Channel` for SDK unit tests: it records each call and answers
from handlers the test gives, so every request the client builds can be checked.

Integration and end-to-end tests never use it: they talk to the real services.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message

from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb

Handler = Callable[[Any], Any]


@dataclass
class Call:
    service: str
    method: str
    request: Any
    timeout: float | None
    metadata: dict[str, str] | None


@dataclass
class FakeChannel:
    """Answers ``method`` with ``handlers[method](request)`` (a message, or raises); unknown methods answer Empty."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    closed: bool = False

    def call(
        self,
        service: str,
        method: str,
        request: Message,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> Any:
        self.calls.append(Call(service, method, request, timeout, None if metadata is None else dict(metadata)))
        handler = self.handlers.get(method)
        return Empty() if handler is None else handler(request)

    def close(self) -> None:
        self.closed = True

    def on(self, method: str, handler: Handler | Message) -> FakeChannel:
        """Answer ``method`` with ``handler`` (a fixed message, or a function of the request)."""
        self.handlers[method] = handler if callable(handler) else (lambda _request, answer=handler: answer)
        return self

    def sent(self, method: str) -> list[Any]:
        """The requests sent to ``method``, in order."""
        return [c.request for c in self.calls if c.method == method]

    def last(self, method: str) -> Call:
        return [c for c in self.calls if c.method == method][-1]


def authentication_channel(token: str = "token-1") -> FakeChannel:
    """An authentication API that logs anyone in with ``token``."""
    return FakeChannel().on("UserLogin", apb.UserLoginResponse(token=token))


def task_message(**fields: Any) -> fe_pb.GetTaskResponse:
    """A GetTask answer; ``task_id`` and ``creator`` have defaults."""
    fields.setdefault("task_id", "task-00000000-0000-0000-0000-000000000001")
    fields.setdefault("creator", "alice")
    return fe_pb.GetTaskResponse(**fields)
