"""Function requests and responses ↔ :mod:`cloister.model.functions` (reference §6)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import InvalidArgumentError, InvalidFunctionIdError, quoted
from cloister.model.files import parse_data_name
from cloister.model.functions import (
    Function,
    FunctionArgument,
    FunctionFile,
    FunctionUpload,
    normalize_quota,
    parse_executor_type,
)
from cloister.model.ids import ExternalId, parse_id
from cloister.rpc.convert.limits import (
    MAX_ARGUMENTS,
    MAX_FILES,
    MAX_TEXT_CHARS,
    check_count,
    check_text,
    check_users,
)

_INT32_MAX = 2**31 - 1


def parse_function_id(text: str) -> ExternalId:
    """``function-<uuid>``; anything else is the reference's ``invalid function id``."""
    return parse_id(text, "function", InvalidFunctionIdError)


def _unique(names: Sequence[str], what: str) -> None:
    """Refuse a name declared twice: a task could not tell the two apart."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidArgumentError(f"{what}: {quoted(name)} is declared twice")
        seen.add(name)


def _arguments(arguments: Sequence[fe_pb.FunctionArgument]) -> tuple[FunctionArgument, ...]:
    check_count(arguments, "function arguments", MAX_ARGUMENTS)
    declared = tuple(
        FunctionArgument(
            key=check_text(a.key, "an argument key"),
            default_value=check_text(a.default_value, f"the default of argument {quoted(a.key)}", MAX_TEXT_CHARS),
            allow_overwrite=a.allow_overwrite,
        )
        for a in arguments
    )
    _unique([a.key for a in declared], "arguments")
    return declared


def _files(
    files: Sequence[fe_pb.FunctionInput] | Sequence[fe_pb.FunctionOutput], what: str
) -> tuple[FunctionFile, ...]:
    check_count(files, what, MAX_FILES)
    declared = tuple(
        FunctionFile(
            name=parse_data_name(f.name, what),
            description=check_text(f.description, f"a description in {what}", MAX_TEXT_CHARS),
            optional=f.optional,
        )
        for f in files
    )
    _unique([f.name for f in declared], what)
    return declared


def _function_from_request(
    request: fe_pb.RegisterFunctionRequest | fe_pb.UpdateFunctionRequest, owner: str, function_id: uuid.UUID
) -> FunctionUpload:
    """The payload's only limit is the message's (``[rpc] max_message_bytes``): it is stored as
    bytes in a record of its own, so any payload a request can carry can be stored."""
    executor_type = parse_executor_type(request.executor_type)
    function = Function(
        id=function_id,
        name=check_text(request.name, "function name"),
        description=check_text(request.description, "function description", MAX_TEXT_CHARS),
        public=request.public,
        executor_type=executor_type,
        payload_sha256="",
        arguments=_arguments(request.arguments),
        inputs=_files(request.inputs, "function inputs"),
        outputs=_files(request.outputs, "function outputs"),
        owner=owner,
        user_allowlist=tuple(check_users(list(request.user_allowlist), "user_allowlist")),
        usage_quota=normalize_quota(request.usage_quota),
    )
    return FunctionUpload.of(function, bytes(request.payload))


def function_from_register_request(
    request: fe_pb.RegisterFunctionRequest, owner: str, function_id: uuid.UUID
) -> FunctionUpload:
    """A new function owned by ``owner``; a negative quota means unlimited."""
    return _function_from_request(request, owner, function_id)


def function_from_update_request(request: fe_pb.UpdateFunctionRequest, owner: str) -> FunctionUpload:
    """The replacement for the function the request names (its id is checked first)."""
    function_id = parse_function_id(request.function_id)
    return _function_from_request(request, owner, function_id.uuid)


def function_to_get_response(function: Function, payload: bytes, *, redacted: bool) -> fe_pb.GetFunctionResponse:
    """``redacted`` hides the payload and the allowlist from users who are only allow-listed."""
    return fe_pb.GetFunctionResponse(
        name=function.name,
        description=function.description,
        executor_type=function.executor_type,
        owner=function.owner,
        payload=b"" if redacted else payload,
        public=function.public,
        arguments=[
            fe_pb.FunctionArgument(key=a.key, default_value=a.default_value, allow_overwrite=a.allow_overwrite)
            for a in function.arguments
        ],
        inputs=[
            fe_pb.FunctionInput(name=f.name, description=f.description, optional=f.optional) for f in function.inputs
        ],
        outputs=[
            fe_pb.FunctionOutput(name=f.name, description=f.description, optional=f.optional) for f in function.outputs
        ],
        user_allowlist=[] if redacted else list(function.user_allowlist),
    )


def usage_stats_to_response(quota: int | None, use_numbers: int) -> fe_pb.GetFunctionUsageStatsResponse:
    """An unlimited quota is ``-1`` on the wire."""
    return fe_pb.GetFunctionUsageStatsResponse(
        function_quota=-1 if quota is None else min(quota, _INT32_MAX),
        current_usage=min(use_numbers, _INT32_MAX),
    )


def function_lists_to_response(registered: Iterable[str], allowed: Iterable[str]) -> fe_pb.ListFunctionsResponse:
    return fe_pb.ListFunctionsResponse(registered_functions=list(registered), allowed_functions=list(allowed))
