"""Frontend answers → the client's views (:mod:`cloister.model.views`), read once, here.

Unlike ``MessageToDict``, nothing at its default value goes missing: a new task's status is
``TaskStatus.CREATED``, not an absent key.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.model.functions import FunctionArgument, FunctionFile
from cloister.model.tasks import TaskStatus
from cloister.model.views import File, Function, Task, TaskResult, TimelineEntry
from cloister.rpc.convert.tasks import task_result_from_proto


def _owners(lists: Sequence[fe_pb.OwnerList]) -> dict[str, frozenset[str]]:
    return {entry.data_name: frozenset(entry.uids) for entry in lists}


def _data_maps(maps: Sequence[fe_pb.DataMap]) -> dict[str, str]:
    return {entry.data_name: entry.data_id for entry in maps}


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def task_from_proto(message: fe_pb.GetTaskResponse) -> Task:
    """A GetTask (or WaitTask, ListTasks) answer as a :class:`Task`.

    A Staged task's ``Err`` is its waiting reason, not an outcome (see
    ``rpc.convert.tasks._visible_result``), so it is kept apart from ``failure``.
    """
    status = TaskStatus(message.status)
    stored = task_result_from_proto(message.result)
    result = failure = waiting = None
    if stored.outputs is not None:
        outputs = stored.outputs
        result = TaskResult(outputs.return_value, dict(outputs.tags_map), outputs.log)
    elif stored.failure is not None:
        if status is TaskStatus.STAGED:
            waiting = stored.failure
        else:
            failure = stored.failure
    return Task(
        id=message.task_id,
        creator=message.creator,
        function_id=message.function_id,
        function_owner=message.function_owner,
        arguments=_arguments(message.function_arguments),
        inputs_ownership=_owners(message.inputs_ownership),
        outputs_ownership=_owners(message.outputs_ownership),
        participants=frozenset(message.participants),
        approved_users=frozenset(message.approved_users),
        assigned_inputs=_data_maps(message.assigned_inputs),
        assigned_outputs=_data_maps(message.assigned_outputs),
        status=status,
        result=result,
        failure=failure,
        waiting_reason=waiting,
    )


def function_from_proto(function_id: str, message: fe_pb.GetFunctionResponse) -> Function:
    return Function(
        id=function_id,
        name=message.name,
        description=message.description,
        executor_type=message.executor_type,
        owner=message.owner,
        public=message.public,
        payload=bytes(message.payload),
        arguments=tuple(FunctionArgument(a.key, a.default_value, a.allow_overwrite) for a in message.arguments),
        inputs=tuple(FunctionFile(f.name, f.description, f.optional) for f in message.inputs),
        outputs=tuple(FunctionFile(f.name, f.description, f.optional) for f in message.outputs),
        allowed_users=tuple(message.user_allowlist),
    )


def file_from_proto(data_id: str, message: fe_pb.GetInputFileResponse | fe_pb.GetOutputFileResponse) -> File:
    return File(id=data_id, owners=frozenset(message.owner), cmac=bytes(message.cmac) or None)


def timeline_from_proto(events: Sequence[cpb.TaskEvent]) -> tuple[TimelineEntry, ...]:
    return tuple(
        TimelineEntry(dt.datetime.fromtimestamp(e.microsecond / 1_000_000, dt.UTC), e.what, e.user_id or None)
        for e in events
    )
