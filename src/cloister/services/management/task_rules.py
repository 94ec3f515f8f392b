"""How a CreateTask request becomes a task: participants, final arguments, file names (§6.6, §6.7, §8.2).

Pure functions over model types. A request that does not fit the function is refused with the
reference's ``invalid task``, followed by what does not fit: the names given, and the names the
function declares. Argument values are never shown: they may be secrets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cloister.errors import InvalidArgumentError, quoted
from cloister.model.functions import Function, FunctionFile
from cloister.model.ids import ExternalId
from cloister.model.tasks import TaskState

_LISTED = 20
"""Names a message lists before it says how many more there are."""


def _names(names: Iterable[str]) -> str:
    ordered = sorted(names)
    shown = ", ".join(quoted(n) for n in ordered[:_LISTED])
    return shown + (f" and {len(ordered) - _LISTED} more" if len(ordered) > _LISTED else "")


def _declared(names: Iterable[str], what: str) -> str:
    listed = list(names)
    return f"its {what}: {_names(listed)}" if listed else f"it has no {what}"


def _invalid_task(problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid task: {problem}")


def final_arguments(function: Function, requested: Mapping[str, Any]) -> dict[str, Any]:
    """The task's arguments: the requested values, and the defaults of the arguments not given.

    A key the function does not declare is refused, and so is one it declares with
    ``allow_overwrite`` false, as in the reference (§6.6). An overwritable argument left out
    takes its default, where the reference refused it; one without a default (an empty
    ``default_value``) must be given. Requested values keep their JSON type; defaults are strings.
    """
    declared = {a.key: a for a in function.arguments}
    overwritable = sorted(a.key for a in function.arguments if a.allow_overwrite)
    unknown = [key for key in requested if key not in declared]
    if unknown:
        raise _invalid_task(
            f"function_arguments has {_names(unknown)}, which the function does not declare; "
            + _declared(overwritable, "arguments a task sets")
        )
    fixed = [key for key in requested if not declared[key].allow_overwrite]
    if fixed:
        raise _invalid_task(
            f"function_arguments sets {_names(fixed)}, which the function fixes (allow_overwrite is false); "
            + _declared(overwritable, "arguments a task sets")
        )
    missing = [key for key in overwritable if key not in requested and not declared[key].default_value]
    if missing:
        raise _invalid_task(f"function_arguments lacks {_names(missing)}, which the function needs (no default)")
    arguments = dict(requested)
    for argument in function.arguments:
        if argument.key not in arguments:
            arguments[argument.key] = argument.default_value
    return arguments


def check_file_names(declared: Sequence[FunctionFile], ownership: Mapping[str, frozenset[str]], field: str) -> None:
    """Every required file is owned, optional ones may be left out, unknown names are refused (§6.7)."""
    names = {f.name for f in declared}
    what = "inputs" if field.startswith("inputs") else "outputs"
    unknown = set(ownership) - names
    if unknown:
        raise _invalid_task(
            f"{field} names {_names(unknown)}, which the function does not declare; {_declared(names, what)}"
        )
    missing = {f.name for f in declared if not f.optional} - set(ownership)
    if missing:
        raise _invalid_task(f"{field} lacks {_names(missing)}, required {what} of the function; give each its owners")


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
    check_file_names(function.inputs, inputs_ownership, "inputs_ownership")
    check_file_names(function.outputs, outputs_ownership, "outputs_ownership")
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
