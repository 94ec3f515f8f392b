"""How a CreateTask request becomes a task: participants, final arguments, file names (§6.6, §6.7, §8.2).

Pure functions over model types; any rule broken is the reference's ``invalid task``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cloister.errors import InvalidArgumentError
from cloister.model.functions import Function, FunctionFile
from cloister.model.ids import ExternalId
from cloister.model.tasks import TaskState


def _invalid_task() -> InvalidArgumentError:
    return InvalidArgumentError("invalid task")


def final_arguments(function: Function, requested: Mapping[str, Any]) -> dict[str, Any]:
    """The request must set exactly the overwritable arguments; the others get their default.

    Requested values keep their JSON type; defaults are always strings (§6.6).
    """
    overwritable = {a.key for a in function.arguments if a.allow_overwrite}
    if set(requested) != overwritable:
        raise _invalid_task()
    arguments = dict(requested)
    for argument in function.arguments:
        if not argument.allow_overwrite:
            arguments[argument.key] = argument.default_value
    return arguments


def check_file_names(declared: Sequence[FunctionFile], ownership: Mapping[str, frozenset[str]]) -> None:
    """Every required file is owned, optional ones may be left out, unknown names are refused (§6.7)."""
    names = {f.name for f in declared}
    optional = {f.name for f in declared if f.optional}
    if set(ownership) | optional != names:
        raise _invalid_task()


def participants(
    function: Function,
    creator: str,
    inputs_ownership: Mapping[str, frozenset[str]],
    outputs_ownership: Mapping[str, frozenset[str]],
) -> frozenset[str]:
    """All data owners and the creator, plus the function's owner when it is private."""
    users = {creator}
    for owners in (*inputs_ownership.values(), *outputs_ownership.values()):
        users |= owners
    if not function.public:
        users.add(function.owner)
    return frozenset(users)


def new_task(
    function: Function,
    function_id: ExternalId,
    creator: str,
    executor: str,
    requested_arguments: Mapping[str, Any],
    inputs_ownership: Mapping[str, frozenset[str]],
    outputs_ownership: Mapping[str, frozenset[str]],
    created_at: float,
) -> TaskState:
    """A ``Created`` task, or ``invalid task`` when the request does not fit the function."""
    arguments = final_arguments(function, requested_arguments)
    check_file_names(function.inputs, inputs_ownership)
    check_file_names(function.outputs, outputs_ownership)
    return TaskState(
        task_id=uuid.uuid4(),
        creator=creator,
        function_id=function_id,
        function_arguments=arguments,
        executor=executor,
        inputs_ownership=dict(inputs_ownership),
        outputs_ownership=dict(outputs_ownership),
        function_owner=function.owner,
        participants=participants(function, creator, inputs_ownership, outputs_ownership),
        created_at=created_at,
    )
