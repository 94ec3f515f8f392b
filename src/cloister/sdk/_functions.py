"""Functions: registering one, and the handle that reads, updates, disables and deletes it."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Final

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.model.functions import FunctionArgument, FunctionFile
from cloister.model.views import Function
from cloister.rpc.convert.views import function_from_proto
from cloister.sdk._channel import CLOISTER_FRONTEND
from cloister.sdk._session import UserCaller

ArgumentSpec = str | FunctionArgument
"""An argument's key, or a :class:`FunctionArgument` with its default and whether a task may override it."""
DataSpec = str | FunctionFile
"""A data name, or a :class:`FunctionFile` with its description and whether it is optional."""


class _Keep(enum.Enum):
    KEEP = "keep"


_KEEP: Final = _Keep.KEEP
"""``update``'s default for the quota, where None already means "unlimited"."""


def _argument(spec: Any) -> fe_pb.FunctionArgument:
    if isinstance(spec, str):
        spec = FunctionArgument(spec)
    if isinstance(spec, FunctionArgument):
        return fe_pb.FunctionArgument(
            key=spec.key, default_value=spec.default_value, allow_overwrite=spec.allow_overwrite
        )
    message: fe_pb.FunctionArgument = spec.message  # a Teaclave-style FunctionArgument
    return message


def _file(spec: Any) -> FunctionFile:
    if isinstance(spec, str):
        return FunctionFile(spec)
    if isinstance(spec, FunctionFile):
        return spec
    message = spec.message  # a Teaclave-style FunctionInput or FunctionOutput
    return FunctionFile(message.name, message.description, message.optional)


def function_fields(
    name: str,
    executor: str,
    description: str,
    payload: bytes,
    arguments: Iterable[Any],
    inputs: Iterable[Any],
    outputs: Iterable[Any],
    public: bool,
    allowed_users: Iterable[str],
    usage_quota: int | None,
) -> dict[str, Any]:
    """What RegisterFunction and UpdateFunction share, for the client and the Teaclave classes alike
    (specs as names, value objects or Teaclave-style objects); an unlimited quota is -1 on the wire."""
    return {
        "name": name,
        "description": description,
        "executor_type": executor,
        "public": public,
        "payload": bytes(payload),
        "arguments": [_argument(a) for a in arguments],
        "inputs": [fe_pb.FunctionInput(**vars(f)) for f in map(_file, inputs)],
        "outputs": [fe_pb.FunctionOutput(**vars(f)) for f in map(_file, outputs)],
        "user_allowlist": list(allowed_users),
        "usage_quota": -1 if usage_quota is None else usage_quota,
    }


class FunctionHandle:
    """A registered function, by id."""

    def __init__(self, session: UserCaller, function_id: str, executor_type: str | None = None) -> None:
        self._session = session
        self.id = function_id
        self.executor_type = executor_type
        """Known when this handle registered the function; None until then (see :meth:`get`)."""

    def __repr__(self) -> str:
        return f"FunctionHandle({self.id!r})"

    def get(self) -> Function:
        response = self._session.frontend("GetFunction", fe_pb.GetFunctionRequest(function_id=self.id))
        return function_from_proto(self.id, response)

    def usage(self) -> tuple[int | None, int]:
        """``(quota, used)``: how many tasks it may run (None: unlimited) and how many have been invoked."""
        stats = self._session.frontend("GetFunctionUsageStats", fe_pb.GetFunctionUsageStatsRequest(function_id=self.id))
        return (None if stats.function_quota < 0 else stats.function_quota), stats.current_usage

    def update(
        self,
        *,
        name: str | None = None,
        executor: str | None = None,
        description: str | None = None,
        payload: bytes | None = None,
        arguments: Iterable[ArgumentSpec] | None = None,
        inputs: Iterable[DataSpec] | None = None,
        outputs: Iterable[DataSpec] | None = None,
        public: bool | None = None,
        allowed_users: Iterable[str] | None = None,
        usage_quota: int | _Keep | None = _KEEP,
    ) -> Function:
        """Change what is given and keep the rest; returns the function as it is now.

        UpdateFunction replaces every field, so the others are read first. ``usage_quota``
        keeps the current quota unless given (None: unlimited).
        """
        current = self.get()
        if usage_quota is _KEEP:
            usage_quota, _ = self.usage()
        fields = function_fields(
            name if name is not None else current.name,
            executor if executor is not None else current.executor_type,
            description if description is not None else current.description,
            payload if payload is not None else current.payload,
            arguments if arguments is not None else current.arguments,
            inputs if inputs is not None else current.inputs,
            outputs if outputs is not None else current.outputs,
            public if public is not None else current.public,
            allowed_users if allowed_users is not None else current.allowed_users,
            usage_quota,
        )
        self._session.frontend("UpdateFunction", fe_pb.UpdateFunctionRequest(function_id=self.id, **fields))
        return self.get()

    def set_requirements(self, labels: Iterable[str]) -> None:
        """Run its tasks only on execution services offering every one of ``labels`` (none: anywhere)."""
        request = cpb.FunctionRequirementsRequest(function_id=self.id, labels=list(labels))
        self._session.frontend("SetFunctionRequirements", request, service=CLOISTER_FRONTEND)

    def disable(self) -> None:
        self._session.frontend("DisableFunction", fe_pb.DisableFunctionRequest(function_id=self.id))

    def delete(self) -> None:
        self._session.frontend("DeleteFunction", fe_pb.DeleteFunctionRequest(function_id=self.id))


class FunctionsAPI:
    """``client.functions``: register functions and reach registered ones."""

    def __init__(self, session: UserCaller) -> None:
        self._session = session

    def register(
        self,
        name: str,
        *,
        executor: str,
        description: str = "",
        payload: bytes = b"",
        arguments: Iterable[ArgumentSpec] = (),
        inputs: Iterable[DataSpec] = (),
        outputs: Iterable[DataSpec] = (),
        public: bool = True,
        allowed_users: Iterable[str] = (),
        usage_quota: int | None = None,
    ) -> FunctionHandle:
        """Register a function run by ``executor`` (``builtin``, ``python`` or ``wasm``).

        Args:
            name: for a builtin, the built-in's name (``builtin-echo``).
            payload: a Python function's source or a WebAssembly module.
            arguments: the argument keys a task passes, as names or :class:`FunctionArgument`.
            inputs: the data names the function reads, as names or :class:`FunctionFile`.
            outputs: the data names it writes.
            public: whether anyone may use it; a private one only its owner and ``allowed_users``.
            usage_quota: how many tasks may be invoked with it; None: no limit.
        """
        fields = function_fields(
            name, executor, description, payload, arguments, inputs, outputs, public, allowed_users, usage_quota
        )
        response = self._session.frontend("RegisterFunction", fe_pb.RegisterFunctionRequest(**fields))
        return FunctionHandle(self._session, response.function_id, executor)

    def get(self, function_id: str) -> FunctionHandle:
        """The handle of a function registered earlier (nothing is sent)."""
        return FunctionHandle(self._session, function_id)

    def list(self, user_id: str | None = None) -> tuple[list[FunctionHandle], list[FunctionHandle]]:
        """``(registered, allowed)``: the functions ``user_id`` (default: you) registered and may use."""
        response = self._session.frontend(
            "ListFunctions", fe_pb.ListFunctionsRequest(user_id=user_id or self._session.user_id)
        )
        return (
            [FunctionHandle(self._session, f) for f in response.registered_functions],
            [FunctionHandle(self._session, f) for f in response.allowed_functions],
        )
