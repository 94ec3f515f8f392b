"""Tasks: their state, result, status machine (reference §8) and the staged form executors run.

The status machine has one door, :func:`transition`: it performs every status change, refuses
an edge that is not in :data:`TRANSITIONS` or an actor that does not own it, and records who
made the change and when. Its rules, including what happens on executor loss, retries and
cancellation, are in :data:`TRANSITIONS`' docstring and ``docs/tasks.md``.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from cloister.errors import IllegalTransitionError
from cloister.model.files import (
    FileCrypto,
    InputFile,
    OutputFile,
    parse_data_name,
    tag_from_json,
    tag_json,
    uids_from_json,
    uids_json,
)
from cloister.model.functions import (
    EMPTY_PAYLOAD_SHA256,
    executor_from_name,
    executor_name,
    executor_type_from_name,
    executor_type_name,
    parse_sha256,
    payload_sha256,
)
from cloister.model.ids import ExternalId


class TaskStatus(enum.IntEnum):
    """Numbered as ``teaclave_common_proto.TaskStatus``."""

    CREATED = 0
    DATA_ASSIGNED = 1
    APPROVED = 2
    STAGED = 3
    RUNNING = 4
    FINISHED = 10
    CANCELED = 20
    FAILED = 99

    @property
    def wire_name(self) -> str:
        return _STATUS_NAMES[self]

    @property
    def is_ended(self) -> bool:
        return self in (TaskStatus.FINISHED, TaskStatus.CANCELED, TaskStatus.FAILED)

    @classmethod
    def from_wire_name(cls, name: str) -> TaskStatus:
        return _STATUS_BY_NAME[name]


_STATUS_NAMES = {
    TaskStatus.CREATED: "Created",
    TaskStatus.DATA_ASSIGNED: "DataAssigned",
    TaskStatus.APPROVED: "Approved",
    TaskStatus.STAGED: "Staged",
    TaskStatus.RUNNING: "Running",
    TaskStatus.FINISHED: "Finished",
    TaskStatus.CANCELED: "Canceled",
    TaskStatus.FAILED: "Failed",
}
_STATUS_BY_NAME = {v: k for k, v in _STATUS_NAMES.items()}

# Reasons the reference fixes (§8.8, §8.9).
REASON_CANCELED_BEFORE_STAGING = "Task canceled"
REASON_CANCELED_BY_USER = "Task Canceled by the user"
REASON_REJECTED_BY = "Task rejected by "
"""Cloister's: followed by the id of the participant who rejected it (RejectTask)."""
REASON_EXECUTOR_TIMEOUT = "Runtime Error: Executor Timeout"
WAITING_PREFIX = "waiting: "
"""How a waiting reason starts; records written before it had a field of its own kept it in ``result``."""


class Actor(enum.Enum):
    """Who made a status change. Management owns a task up to Staged, the scheduler after it."""

    MANAGEMENT = "management"
    """A participant's call (AssignData, ApproveTask, InvokeTask, CancelTask before staging)."""
    SCHEDULER = "scheduler"
    """The scheduler's own decision: hand-out, cancellation, executor loss."""
    EXECUTOR = "executor"
    """An execution service's report (UpdateTaskStatus, UpdateTaskResult), applied by the scheduler."""


_M, _S, _E = Actor.MANAGEMENT, Actor.SCHEDULER, Actor.EXECUTOR
_ST = TaskStatus

TRANSITIONS: dict[tuple[TaskStatus, TaskStatus], frozenset[Actor]] = {
    (_ST.CREATED, _ST.DATA_ASSIGNED): frozenset({_M}),
    (_ST.CREATED, _ST.APPROVED): frozenset({_M}),
    (_ST.CREATED, _ST.STAGED): frozenset({_M}),
    (_ST.CREATED, _ST.CANCELED): frozenset({_M}),
    (_ST.DATA_ASSIGNED, _ST.APPROVED): frozenset({_M}),
    (_ST.DATA_ASSIGNED, _ST.STAGED): frozenset({_M}),
    (_ST.DATA_ASSIGNED, _ST.CANCELED): frozenset({_M}),
    (_ST.APPROVED, _ST.STAGED): frozenset({_M}),
    (_ST.APPROVED, _ST.CANCELED): frozenset({_M}),
    (_ST.STAGED, _ST.RUNNING): frozenset({_S, _E}),
    (_ST.STAGED, _ST.CANCELED): frozenset({_S}),
    (_ST.STAGED, _ST.FAILED): frozenset({_S}),
    (_ST.RUNNING, _ST.STAGED): frozenset({_S}),
    (_ST.RUNNING, _ST.FINISHED): frozenset({_E}),
    (_ST.RUNNING, _ST.FAILED): frozenset({_S, _E}),
    (_ST.RUNNING, _ST.CANCELED): frozenset({_S}),
}
"""Every legal status change and who may make it; nothing else is legal::

    Created → DataAssigned        management  AssignData assigned the last data name
    Created|DataAssigned          management  ApproveTask/InvokeTask when their conditions already
      → Approved|Staged                       hold (§8.4, §8.5 may skip states)
    Approved → Staged             management  InvokeTask, one commit with queue element and use count
    Created|DataAssigned|Approved management  CancelTask before staging: "Task canceled"
      → Canceled
    Staged → Running              scheduler   hand-out to a Cloister execution service, one commit
                                              with the assignment
                                  executor    a Teaclave executor's UpdateTaskStatus
    Running → Staged              scheduler   a hand-out whose caller was gone before it was answered
                                              (the scheduler was stopped meanwhile, say): the execution
                                              service never saw the task, so it goes back to the queue
    Running → Finished            executor    UpdateTaskResult with an Ok result
    Running → Failed              executor    UpdateTaskResult with an Err result (the function failed)
    Staged|Running → Failed       scheduler   executor loss: the service it was handed to went silent
                                              (or stopped listing it) for executor_timeout_seconds of
                                              the scheduler's running time: "Runtime Error: Executor
                                              Timeout: …"; or a Teaclave one reported Idle
    Staged|Running → Canceled     scheduler   CancelTask via cancel_queue: "Task Canceled by the
                                              user"; an executor running it is told to stop

Rules that follow from the table:

* **Ended is final.** Finished, Failed and Canceled have no way out: a result that arrives for a
  task already Canceled or Failed is refused and changes nothing (its outputs' cmacs are not
  written either).
* **No task runs twice.** A task handed out is never re-queued: its function may have had
  effects, so losing its executor fails it. A hand-out that was never answered (its caller had
  gone) was not a hand-out, and that task is queued again. A task never handed out stays Staged, its queue
  element unacknowledged, across scheduler restarts, and is handed out once.
* **No automatic retries of a task.** A failed task stays failed; a participant creates a new
  one. What is retried is the platform's own work (a storage commit, a queue read), which is
  idempotent.
* **A waiting reason is not a result.** A Staged task that no live execution service can run gets
  a ``waiting_reason`` (:func:`with_waiting_reason`); every transition clears it.
"""


APPROVAL = "Approval"
"""A :class:`TaskEvent`'s ``what`` for a participant's approval; every other is a status's wire name."""
CREATED = "Created"
"""A timeline's first step (not kept as an event: it is the task's ``created_at`` and ``creator``)."""
MAX_HISTORY = 100
"""Events a task keeps; past them the oldest after the first few are dropped (a task put back
in the queue again and again must not grow without bound)."""


@dataclass(frozen=True)
class TaskEvent:
    """One step of a task's life, for its timeline: a status change, or a participant's approval."""

    at: float
    """Seconds since the epoch."""
    what: str
    """The new status's wire name (``Staged``), or :data:`APPROVAL`."""
    user: str = ""
    """Who approved, for an approval."""

    def to_json(self) -> list[Any]:
        return [self.at, self.what, self.user]

    @classmethod
    def from_json(cls, data: list[Any]) -> TaskEvent:
        at, what, user = data
        return cls(float(at), str(what), str(user))


def with_event(task: TaskState, event: TaskEvent) -> TaskState:
    """``task`` with ``event`` at the end of its history, which keeps at most :data:`MAX_HISTORY`."""
    history = (*task.history, event)
    if len(history) > MAX_HISTORY:
        history = history[:10] + history[len(history) - (MAX_HISTORY - 10) :]
    return replace(task, history=history)


def transition(
    task: TaskState, to: TaskStatus, *, by: Actor, result: TaskResult | None = None, at: float | None = None
) -> TaskState:
    """The task moved to ``to`` by ``by`` at ``at`` (default: now), with ``result`` if given.

    Raises:
        IllegalTransitionError: the edge is not in :data:`TRANSITIONS`, ``by`` does not own it,
            or a task would end without a result.
    """
    owners = TRANSITIONS.get((task.status, to))
    if owners is None:
        raise IllegalTransitionError(
            f"illegal task transition: {task.status.wire_name} -> {to.wire_name} ({task.external_id})"
        )
    if by not in owners:
        raise IllegalTransitionError(
            f"{by.value} may not move a task from {task.status.wire_name} to {to.wire_name} ({task.external_id})"
        )
    if to.is_ended and result is None:
        raise IllegalTransitionError(f"a task cannot end as {to.wire_name} without a result ({task.external_id})")
    now = time.time() if at is None else at
    moved = replace(
        task,
        status=to,
        result=task.result if result is None else result,
        waiting_reason=None,
        changed_by=by,
        changed_at=now,
    )
    return with_event(moved, TaskEvent(now, to.wire_name))


def with_waiting_reason(task: TaskState, reason: str) -> TaskState:
    """A Staged task with why it waits; not a transition, and only a Staged task waits.

    Raises:
        IllegalTransitionError: the task is not Staged.
    """
    if task.status is not TaskStatus.STAGED:
        raise IllegalTransitionError(f"only a Staged task can wait, not a {task.status.wire_name} one")
    return replace(task, waiting_reason=reason)


@dataclass(frozen=True)
class TaskOutputs:
    return_value: bytes = b""
    tags_map: dict[str, bytes] = field(default_factory=dict)
    log: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskResult:
    """``NotReady`` when both are None; otherwise exactly one of ``outputs`` and ``failure``."""

    outputs: TaskOutputs | None = None
    failure: str | None = None

    @classmethod
    def ok(cls, outputs: TaskOutputs) -> TaskResult:
        return cls(outputs=outputs)

    @classmethod
    def err(cls, reason: str) -> TaskResult:
        return cls(failure=reason)

    def to_json(self) -> Any:
        if self.outputs is not None:
            return {
                "Ok": {
                    "return_value": list(self.outputs.return_value),
                    "tags_map": {"inner": {k: tag_json(v) for k, v in sorted(self.outputs.tags_map.items())}},
                    "log": list(self.outputs.log),
                }
            }
        if self.failure is not None:
            return {"Err": {"reason": self.failure}}
        return "NotReady"

    @classmethod
    def from_json(cls, data: Any) -> TaskResult:
        if data == "NotReady":
            return cls()
        if "Ok" in data:
            ok = data["Ok"]
            return cls.ok(
                TaskOutputs(
                    return_value=bytes(ok["return_value"]),
                    tags_map={k: tag_from_json(v) for k, v in ok["tags_map"]["inner"].items()},
                    log=tuple(ok["log"]),
                )
            )
        return cls.err(data["Err"]["reason"])


def _owners_json(owners: dict[str, frozenset[str]]) -> dict[str, Any]:
    return {"inner": {name: uids_json(uids) for name, uids in sorted(owners.items())}}


def _owners_from_json(data: dict[str, Any]) -> dict[str, frozenset[str]]:
    return {name: uids_from_json(v) for name, v in data["inner"].items()}


@dataclass(frozen=True)
class TaskState:
    task_id: uuid.UUID
    creator: str
    function_id: ExternalId
    function_arguments: dict[str, Any]
    executor: str
    inputs_ownership: dict[str, frozenset[str]]
    outputs_ownership: dict[str, frozenset[str]]
    function_owner: str
    participants: frozenset[str]
    approved_users: frozenset[str] = frozenset()
    assigned_inputs: dict[str, InputFile] = field(default_factory=dict)
    assigned_outputs: dict[str, OutputFile] = field(default_factory=dict)
    result: TaskResult = TaskResult()
    status: TaskStatus = TaskStatus.CREATED
    waiting_reason: str | None = None
    """Why a Staged task has not been handed out yet (no live execution service can run it)."""
    changed_by: Actor | None = None
    """Who made the last status change; None for a new task or a record from before it was kept."""
    changed_at: float | None = None
    """When the last status change was made (seconds since the epoch)."""
    created_at: float | None = None
    """When the task was created (seconds since the epoch); None for a record from before it was kept."""
    approvals: dict[str, str] = field(default_factory=dict)
    """Participant → the hash of the manifest terms they approved (``cloister.model.manifest``)."""
    receipt: str | None = None
    """The signed receipt of an ended task (a compact JWS), as its execution service reported it."""
    manifest: bytes | None = field(default=None, repr=False)
    """The approved manifest the task was staged with (``cloister.model.manifest``, canonical
    bytes): the receipt carries only its hash, so participants get it from here."""
    history: tuple[TaskEvent, ...] = ()
    """Its status changes and approvals, oldest first (empty for a record from before it was kept)."""

    @property
    def external_id(self) -> str:
        return f"task-{self.task_id}"

    @property
    def key(self) -> bytes:
        return self.external_id.encode()

    @property
    def all_data_assigned(self) -> bool:
        return set(self.inputs_ownership) == set(self.assigned_inputs) and set(self.outputs_ownership) == set(
            self.assigned_outputs
        )

    @property
    def all_approved(self) -> bool:
        return len(self.participants) == 1 or self.approved_users >= self.participants

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": str(self.task_id),
            "creator": self.creator,
            "function_id": self.function_id.to_json(),
            "function_arguments": {"inner": dict(sorted(self.function_arguments.items()))},
            "executor": executor_name(self.executor),
            "inputs_ownership": _owners_json(self.inputs_ownership),
            "outputs_ownership": _owners_json(self.outputs_ownership),
            "function_owner": self.function_owner,
            "participants": uids_json(self.participants),
            "approved_users": uids_json(self.approved_users),
            "assigned_inputs": {"inner": {k: v.to_json() for k, v in sorted(self.assigned_inputs.items())}},
            "assigned_outputs": {"inner": {k: v.to_json() for k, v in sorted(self.assigned_outputs.items())}},
            "result": self.result.to_json(),
            "status": self.status.wire_name,
            # Cloister's own fields, written only when set so an unchanged task's record keeps §3.2's shape.
            **({"waiting_reason": self.waiting_reason} if self.waiting_reason is not None else {}),
            **({"changed_by": self.changed_by.value} if self.changed_by is not None else {}),
            **({"changed_at": self.changed_at} if self.changed_at is not None else {}),
            **({"created_at": self.created_at} if self.created_at is not None else {}),
            **({"approvals": dict(sorted(self.approvals.items()))} if self.approvals else {}),
            **({"receipt": self.receipt} if self.receipt is not None else {}),
            **({"manifest": self.manifest.decode("ascii")} if self.manifest is not None else {}),
            **({"history": [event.to_json() for event in self.history]} if self.history else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskState:
        """Reads records without the Cloister fields too (written before they existed)."""
        status = TaskStatus.from_wire_name(data["status"])
        result = TaskResult.from_json(data["result"])
        waiting = data.get("waiting_reason")
        if waiting is None and status is TaskStatus.STAGED and (result.failure or "").startswith(WAITING_PREFIX):
            waiting, result = result.failure, TaskResult()  # the earlier code's stand-in result
        changed_by = data.get("changed_by")
        changed_at = data.get("changed_at")
        created_at = data.get("created_at")
        return cls(
            task_id=uuid.UUID(data["task_id"]),
            creator=data["creator"],
            function_id=ExternalId.from_json(data["function_id"]),
            function_arguments=dict(data["function_arguments"]["inner"]),
            executor=executor_from_name(data["executor"]),
            inputs_ownership=_owners_from_json(data["inputs_ownership"]),
            outputs_ownership=_owners_from_json(data["outputs_ownership"]),
            function_owner=data["function_owner"],
            participants=uids_from_json(data["participants"]),
            approved_users=uids_from_json(data["approved_users"]),
            assigned_inputs={k: InputFile.from_json(v) for k, v in data["assigned_inputs"]["inner"].items()},
            assigned_outputs={k: OutputFile.from_json(v) for k, v in data["assigned_outputs"]["inner"].items()},
            result=result,
            status=status,
            waiting_reason=None if waiting is None else str(waiting),
            changed_by=None if changed_by is None else Actor(changed_by),
            changed_at=None if changed_at is None else float(changed_at),
            created_at=None if created_at is None else float(created_at),
            approvals={str(k): str(v) for k, v in data.get("approvals", {}).items()},
            receipt=None if data.get("receipt") is None else str(data["receipt"]),
            manifest=None if data.get("manifest") is None else str(data["manifest"]).encode("ascii"),
            history=tuple(TaskEvent.from_json(event) for event in data.get("history", ())),
        )


@dataclass(frozen=True)
class StagedInput:
    url: str
    cmac: bytes
    crypto: FileCrypto


@dataclass(frozen=True)
class StagedOutput:
    url: str
    crypto: FileCrypto


@dataclass(frozen=True)
class StagedTask:
    """What an execution service needs to run one task; its JSON travels on the wire (§3.2)."""

    task_id: uuid.UUID
    function_id: uuid.UUID
    user_id: str
    executor: str
    executor_type: str
    function_name: str
    function_arguments: dict[str, Any]
    function_payload: bytes = field(repr=False)
    input_data: dict[str, StagedInput]
    output_data: dict[str, StagedOutput]
    manifest: bytes | None = field(default=None, repr=False)
    """The approved manifest (``cloister.model.manifest``, canonical bytes). Cloister's own: it
    travels in the staged-task queue element and in PullTaskWait, never in Teaclave's JSON."""
    trace: str = ""
    """The W3C ``traceparent`` of the call that staged it (empty unless tracing is on), so the run
    joins that call's trace. Like ``manifest``, never in Teaclave's JSON."""
    function_payload_sha256: str = ""
    """Names the payload when ``function_payload`` does not carry it (staged tasks travel without
    it; the execution service gets it from the scheduler or its cache); computed when empty."""

    def __post_init__(self) -> None:
        if not self.function_payload_sha256:
            object.__setattr__(self, "function_payload_sha256", payload_sha256(self.function_payload))

    @property
    def payload_missing(self) -> bool:
        """Whether the payload still has to be fetched: it is named but not carried."""
        return not self.function_payload and self.function_payload_sha256 != EMPTY_PAYLOAD_SHA256

    def without_payload(self) -> StagedTask:
        """The same task naming its payload by digest only."""
        return replace(self, function_payload=b"")

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": str(self.task_id),
            "function_id": str(self.function_id),
            "user_id": self.user_id,
            "executor": executor_name(self.executor),
            "executor_type": executor_type_name(self.executor_type),
            "function_name": self.function_name,
            "function_arguments": {"inner": dict(sorted(self.function_arguments.items()))},
            "function_payload": list(self.function_payload),
            "input_data": {
                "inner": {
                    k: {"url": v.url, "cmac": tag_json(v.cmac), "crypto_info": v.crypto.to_json()}
                    for k, v in sorted(self.input_data.items())
                }
            },
            "output_data": {
                "inner": {
                    k: {"url": v.url, "crypto_info": v.crypto.to_json()} for k, v in sorted(self.output_data.items())
                }
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StagedTask:
        return cls(
            task_id=uuid.UUID(data["task_id"]),
            function_id=uuid.UUID(data["function_id"]),
            user_id=data["user_id"],
            executor=executor_from_name(data["executor"]),
            executor_type=executor_type_from_name(data["executor_type"]),
            function_name=data["function_name"],
            function_arguments=dict(data["function_arguments"]["inner"]),
            function_payload=bytes(data["function_payload"]),
            input_data={
                parse_data_name(k, "input_data"): StagedInput(
                    v["url"], tag_from_json(v["cmac"]), FileCrypto.from_json(v["crypto_info"])
                )
                for k, v in data["input_data"]["inner"].items()
            },
            output_data={
                parse_data_name(k, "output_data"): StagedOutput(v["url"], FileCrypto.from_json(v["crypto_info"]))
                for k, v in data["output_data"]["inner"].items()
            },
        )

    @classmethod
    def for_task(cls, task: TaskState, function: Any, user_id: str, manifest: bytes | None = None) -> StagedTask:
        """Stage ``task`` to run ``function`` (a :class:`~cloister.model.functions.Function`)."""
        return cls(
            task_id=task.task_id,
            function_id=function.id,
            user_id=user_id,
            executor=task.executor,
            executor_type=function.executor_type,
            function_name=function.name,
            function_arguments=task.function_arguments,
            function_payload=function.inline_payload or b"",
            input_data={k: StagedInput(f.url, f.cmac, f.crypto) for k, f in task.assigned_inputs.items()},
            output_data={k: StagedOutput(f.url, f.crypto) for k, f in task.assigned_outputs.items()},
            manifest=manifest,
            function_payload_sha256=function.payload_sha256,
        )


_MAX_TRACE_LENGTH = 128
"""A ``traceparent`` is 55 characters; anything much longer is not one."""


@dataclass(frozen=True)
class StagedElement:
    """An element of the ``staged-task`` queue: the staged task and what an executor must offer.

    A bare StagedTask JSON (Teaclave's element) is read too, and so is an element from earlier
    versions that carried a copy of the record under ``task`` (ignored).
    """

    staged: StagedTask
    requires: tuple[str, ...] = ()
    """Labels an execution service must offer to run it (the function's requirements)."""
    stored: bytes | None = field(default=None, repr=False)
    """The task record exactly as the commit that enqueued this element stored it. The scheduler
    decides the hand-out on it without a read, and commits on condition that storage still holds
    these very bytes (``CheckValue``): a copy that disagrees with storage is never acted on.
    None: the record is read (elements of Teaclave and of earlier versions)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"staged_task": self.staged.to_json()}
        if self.requires:
            data["requires"] = list(self.requires)
        if self.staged.manifest is not None:
            data["manifest"] = self.staged.manifest.decode()
        if self.staged.trace:
            data["trace"] = self.staged.trace
        if self.staged.payload_missing:
            data["payload_sha256"] = self.staged.function_payload_sha256
        if self.stored is not None:
            data["stored"] = self.stored.decode()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StagedElement:
        if "staged_task" not in data:
            return cls(StagedTask.from_json(data))
        staged = StagedTask.from_json(data["staged_task"])
        manifest = data.get("manifest")
        if manifest is not None:
            staged = replace(staged, manifest=str(manifest).encode())
        trace = data.get("trace")
        if isinstance(trace, str) and len(trace) <= _MAX_TRACE_LENGTH:
            staged = replace(staged, trace=trace)
        if "payload_sha256" in data and not staged.function_payload:
            staged = replace(staged, function_payload_sha256=parse_sha256(data["payload_sha256"]))
        stored = data.get("stored")
        return cls(staged, tuple(data.get("requires", ())), stored.encode() if isinstance(stored, str) else None)
