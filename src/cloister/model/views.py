"""What a client reads back: tasks, results, functions and files as frozen values, not protobuf.

These are views of a participant, built from the frontend's answers by
:mod:`cloister.rpc.convert.views`; the stored records (``model.tasks.TaskState``,
``model.functions.Function``) are the server's and carry what a client never sees.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cloister.model.functions import FunctionArgument, FunctionFile
from cloister.model.tasks import APPROVAL, CREATED, TaskStatus

_NOT_INVOKED = (TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED, TaskStatus.APPROVED)


@dataclass(frozen=True)
class TaskResult:
    """A finished task's outcome: the function's return value, its outputs' tags and its log."""

    return_value: bytes
    output_tags: Mapping[str, bytes] = field(default_factory=dict)
    """Data name → the cmac of the output file written for it."""
    log: tuple[str, ...] = ()
    """What the function printed (stdout and stderr), line by line, up to the ``[sandbox] log_bytes``
    limit; every participant of the task reads it, as they read the return value."""
    receipt: Any = field(default=None, compare=False)
    """The task's signed receipt (``cloister.sdk.Receipt``, with ``verify(trust)``) when the SDK
    fetched one; None otherwise. Typed loosely: this layer cannot name the SDK's class."""


@dataclass(frozen=True)
class Task:
    """A task as one of its participants sees it (GetTask)."""

    id: str
    creator: str
    function_id: str
    function_owner: str
    arguments: Mapping[str, Any]
    inputs_ownership: Mapping[str, frozenset[str]]
    outputs_ownership: Mapping[str, frozenset[str]]
    participants: frozenset[str]
    approved_users: frozenset[str]
    assigned_inputs: Mapping[str, str]
    """Data name → the id of the file assigned to it."""
    assigned_outputs: Mapping[str, str]
    status: TaskStatus
    result: TaskResult | None = None
    """Set once the task has finished."""
    failure: str | None = None
    """Why it failed or was cancelled, once it has ended so."""
    waiting_reason: str | None = None
    """Why a Staged task has not started: no live execution service can run it."""

    @property
    def is_ended(self) -> bool:
        return self.status.is_ended

    @property
    def is_invoked(self) -> bool:
        return self.status not in _NOT_INVOKED

    @property
    def missing_approvals(self) -> frozenset[str]:
        """Participants who have not approved; a task with one participant needs no approval."""
        if len(self.participants) <= 1:
            return frozenset()
        return self.participants - self.approved_users

    @property
    def unassigned_inputs(self) -> frozenset[str]:
        return frozenset(self.inputs_ownership) - frozenset(self.assigned_inputs)

    @property
    def unassigned_outputs(self) -> frozenset[str]:
        return frozenset(self.outputs_ownership) - frozenset(self.assigned_outputs)

    def missing(self) -> list[str]:
        """What stops a task that is not invoked from running, one phrase each; empty for any other task."""
        if self.is_invoked:
            return []
        found = []
        if self.missing_approvals:
            found.append(f"approval by {', '.join(sorted(self.missing_approvals))}")
        if self.unassigned_inputs:
            found.append(f"input data {', '.join(sorted(self.unassigned_inputs))}")
        if self.unassigned_outputs:
            found.append(f"output data {', '.join(sorted(self.unassigned_outputs))}")
        found.append(f"an invoke by its creator {self.creator}")
        return found


@dataclass(frozen=True)
class TimelineEntry:
    """One step of a task's life as its participants see it: a status change, or an approval."""

    at: dt.datetime
    """When it happened (UTC)."""
    what: str
    """``"Created"``, the status the task moved to (``TaskStatus`` wire name, e.g. ``"Staged"``),
    or ``"Approval"``."""
    user_id: str | None = None
    """Who created it, for ``"Created"``; who approved, for an approval."""

    @property
    def description(self) -> str:
        if self.what == APPROVAL:
            return f"Approved by {self.user_id}"
        if self.what == CREATED:
            return f"Created by {self.user_id}"
        return _STEP_NAMES.get(self.what, self.what)


_STEP_NAMES = {
    "DataAssigned": "All data assigned",
    "Approved": "Approved by every participant",
    "Staged": "Invoked: waiting for an execution service",
    "Running": "Running",
    "Finished": "Finished",
    "Failed": "Failed",
    "Canceled": "Canceled",
}


@dataclass(frozen=True)
class Function:
    """A registered function as GetFunction shows it; ``payload`` and ``allowed_users`` are
    empty for callers who are not its owner."""

    id: str
    name: str
    description: str
    executor_type: str
    owner: str
    public: bool
    payload: bytes = field(default=b"", repr=False)
    arguments: tuple[FunctionArgument, ...] = ()
    inputs: tuple[FunctionFile, ...] = ()
    outputs: tuple[FunctionFile, ...] = ()
    allowed_users: tuple[str, ...] = ()


@dataclass(frozen=True)
class File:
    """A registered input or output file: who owns it and, once known, its cmac."""

    id: str
    owners: frozenset[str]
    cmac: bytes | None = None
    """An output's cmac is unknown (None) until a task has written it."""

    @property
    def is_input(self) -> bool:
        return self.id.startswith("input-")
