"""Task requests, responses and results ↔ :mod:`cloister.model.tasks` (reference §8).

``task_result_to_proto``/``task_result_from_proto`` are shared by management, the scheduler
and the SDK, so a result reads the same wherever it is decoded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import InvalidArgumentError
from cloister.model.files import parse_data_name
from cloister.model.tasks import CREATED, TaskEvent, TaskOutputs, TaskResult, TaskState, TaskStatus
from cloister.rpc.convert.limits import (
    MAX_ARGUMENTS_JSON_BYTES,
    MAX_FILES,
    check_count,
    check_text,
    check_users,
    too_large,
)
from cloister.rpc.long_poll import granted_wait


def wait_seconds(timeout_ms: int) -> float:
    """How long a WaitTask call waits: its ``timeout_ms``, at most a long poll's longest wait."""
    return granted_wait(timeout_ms / 1000)


DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    """A ListTasks ``page_size``: 0 asks for :data:`DEFAULT_PAGE_SIZE`, more than :data:`MAX_PAGE_SIZE` is refused."""
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgumentError(
            f"page_size {requested} is too large: at most {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})"
        )
    return requested or DEFAULT_PAGE_SIZE


def statuses_from_proto(values: Sequence[int]) -> frozenset[TaskStatus]:
    """A ListTasks ``statuses`` filter; a number that is no task status is refused, naming the valid ones."""
    statuses = set()
    for value in values:
        try:
            statuses.add(TaskStatus(value))
        except ValueError:
            valid = ", ".join(f"{s.value} ({s.name})" for s in TaskStatus)
            raise InvalidArgumentError(f"statuses: {value} is not a task status; valid: {valid}") from None
    return frozenset(statuses)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "a number"


def function_arguments_from_json(text: str) -> dict[str, Any]:
    """Parse ``function_arguments``: a JSON object text of bounded size, as the reference requires."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_ARGUMENTS_JSON_BYTES:
        raise too_large("function_arguments", size, MAX_ARGUMENTS_JSON_BYTES)
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
        # Lone surrogates (``"\ud800"``) would make the task unstorable later.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        elif isinstance(exc, UnicodeEncodeError):
            reason = "a string holds a lone UTF-16 surrogate"
        else:
            reason = str(exc)
            if isinstance(exc, json.JSONDecodeError):
                reason = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise InvalidArgumentError(f"function_arguments is not valid JSON: {reason}") from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(
            f'function_arguments must be a JSON object ({{"key": value, ...}}), not {_json_kind(value)}'
        )
    return value


def function_arguments_to_json(arguments: Mapping[str, Any]) -> str:
    """Compact JSON with sorted keys, as Teaclave renders its BTreeMap."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def owners_from_proto(owner_lists: Sequence[fe_pb.OwnerList], what: str) -> dict[str, frozenset[str]]:
    """Data name → owners; a repeated data name keeps its last entry (map semantics)."""
    check_count(owner_lists, what, MAX_FILES)
    owners: dict[str, frozenset[str]] = {}
    for entry in owner_lists:
        name = parse_data_name(entry.data_name, what)
        owners[name] = frozenset(check_users(list(entry.uids), f"the owners of {name!r}"))
    return owners


def owners_to_proto(owners: Mapping[str, frozenset[str]]) -> list[fe_pb.OwnerList]:
    return [fe_pb.OwnerList(data_name=name, uids=sorted(uids)) for name, uids in sorted(owners.items())]


def data_maps_from_proto(maps: Sequence[fe_pb.DataMap], what: str) -> list[tuple[str, str]]:
    """``(data name, data id)`` pairs in request order; the ids are parsed by the caller."""
    check_count(maps, what, MAX_FILES)
    return [(parse_data_name(m.data_name, what), check_text(m.data_id, f"a data id in {what}")) for m in maps]


def task_result_to_proto(result: TaskResult) -> common_pb.TaskResult:
    """``NotReady`` is a ``TaskResult`` with no oneof member set."""
    if result.outputs is not None:
        outputs = result.outputs
        return common_pb.TaskResult(
            Ok=common_pb.TaskOutputs(
                return_value=outputs.return_value, tags_map=dict(outputs.tags_map), log=list(outputs.log)
            )
        )
    if result.failure is not None:
        return common_pb.TaskResult(Err=common_pb.TaskFailure(reason=result.failure))
    return common_pb.TaskResult()


def task_result_from_proto(message: common_pb.TaskResult) -> TaskResult:
    kind = message.WhichOneof("result")
    if kind == "Ok":
        ok = message.Ok
        return TaskResult.ok(
            TaskOutputs(return_value=bytes(ok.return_value), tags_map=dict(ok.tags_map), log=tuple(ok.log))
        )
    if kind == "Err":
        return TaskResult.err(message.Err.reason)
    return TaskResult()


def _visible_result(task: TaskState) -> TaskResult:
    """The result GetTask sends: a Staged task's waiting reason shows as its not-yet-final ``Err``.

    Teaclave's GetTaskResponse has no field for it, and messages are not changed, so the reason
    travels where a Teaclave client already looks; the status (Staged) says it is no outcome.
    The stored record keeps it apart, in ``waiting_reason``.
    """
    if task.waiting_reason is not None and task.result.outputs is None and task.result.failure is None:
        return TaskResult.err(task.waiting_reason)
    return task.result


def task_to_get_response(task: TaskState) -> fe_pb.GetTaskResponse:
    """The GetTask view of a task (§8.1); sets are sent sorted so answers are stable."""
    return fe_pb.GetTaskResponse(
        task_id=task.external_id,
        creator=task.creator,
        function_id=str(task.function_id),
        function_owner=task.function_owner,
        function_arguments=function_arguments_to_json(task.function_arguments),
        inputs_ownership=owners_to_proto(task.inputs_ownership),
        outputs_ownership=owners_to_proto(task.outputs_ownership),
        participants=sorted(task.participants),
        approved_users=sorted(task.approved_users),
        assigned_inputs=[
            fe_pb.DataMap(data_name=name, data_id=f.external_id) for name, f in sorted(task.assigned_inputs.items())
        ],
        assigned_outputs=[
            fe_pb.DataMap(data_name=name, data_id=f.external_id) for name, f in sorted(task.assigned_outputs.items())
        ],
        status=int(task.status),
        result=task_result_to_proto(_visible_result(task)),
    )


def history_to_proto(task: TaskState) -> list[cpb.TaskEvent]:
    """The task's timeline for GetTaskReceipt: its creation (when known), then its history."""
    created = () if task.created_at is None else (TaskEvent(task.created_at, CREATED, task.creator),)
    return [
        cpb.TaskEvent(microsecond=round(event.at * 1_000_000), what=event.what, user_id=event.user)
        for event in (*created, *task.history)
    ]
