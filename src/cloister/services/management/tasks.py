"""Tasks: create, assign data, approve, invoke, cancel, read and wait for them (§8.2-§8.7).

A task is rewritten only while its key's lock is held, so two participants approving at the
same moment both count, and only on condition that its stored version is the one read, so a
write never lands over a change made elsewhere meanwhile. Management owns a task's status up
to Staged (``cloister.model.tasks.TRANSITIONS``). InvokeTask stages the task, counts the use and
enqueues the staged task in one commit: either the task runs and is counted, or neither happens.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from cloister.errors import (
    CloisterError,
    FailedOperationError,
    InvalidArgumentError,
    InvalidDataIdError,
    InvalidFunctionIdError,
    InvalidTaskIdError,
    quoted,
)
from cloister.model.access import Action, Query, Subject, assignment_query, function_query, task_query
from cloister.model.files import InputFile, OutputFile
from cloister.model.functions import Function, FunctionUsage, executor_for
from cloister.model.ids import ExternalId, parse_id, requirements_key, usage_key
from cloister.model.manifest import manifest_for_task
from cloister.model.tasks import (
    APPROVAL,
    REASON_CANCELED_BEFORE_STAGING,
    REASON_REJECTED_BY,
    Actor,
    StagedElement,
    StagedTask,
    TaskEvent,
    TaskResult,
    TaskState,
    TaskStatus,
    transition,
    with_event,
)
from cloister.rpc import tracing
from cloister.rpc.authorizer import Authorizer, denied, require
from cloister.rpc.convert.tasks import function_arguments_from_json, wait_seconds
from cloister.services.management import task_index, task_rules
from cloister.services.management.locks import KeyLocks, retrying
from cloister.storage.client import StorageClient
from cloister.storage.ops import Check, Enqueue, Op, Put, Versioned
from cloister.storage.records import CANCEL_QUEUE, STAGED_TASK_QUEUE, KeptRecords, decode, encode, put

T = TypeVar("T")

_PENDING = (TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED, TaskStatus.APPROVED)
_AWAITING_APPROVAL = (TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED)
_LIST_CHUNK = 200
"""Index entries read (and decided) per round trip while a page fills."""


def _version(value: Versioned | None) -> int:
    return 0 if value is None else value.version


class _KeptFirst:
    """Reads for one read-decide-commit: records kept from this service's own writes and reads
    where it has them all (no round trip), storage's otherwise.

    Every commit made on them checks their versions, so a stale one costs a refused commit, never
    a wrong write. A refusal decided on kept records is checked against storage before it is
    answered (:meth:`still_current`), and decided again only if they had changed.
    """

    def __init__(self, storage: StorageClient, kept: KeptRecords) -> None:
        self._storage = storage
        self._kept = kept
        self._trusted = True
        self.used: dict[bytes, int] = {}
        """Kept records the current attempt decided on: key -> version."""

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        found = self._kept.known(keys) if self._trusted else None
        if found is not None:
            self.used.update((key, _version(value)) for key, value in zip(keys, found, strict=True))
            return found
        values = await self._storage.read(keys)
        for key, value in zip(keys, values, strict=True):
            self._kept.keep(key, value)
        return values

    async def still_current(self) -> bool:
        """Whether the kept records the last attempt decided on are still storage's; if not, they are
        forgotten and the next attempt reads."""
        if not self.used:
            return True
        keys = list(self.used)
        current = await self._storage.read(keys)
        fresh = all(_version(value) == self.used[key] for key, value in zip(keys, current, strict=True))
        if not fresh:
            self._kept.forget(*keys)
            self._trusted = False
        self.used = {}
        return fresh

    async def attempt(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation`` on kept records, and again on storage's when they had changed."""
        try:
            return await operation()
        except CloisterError:
            if await self.still_current():
                raise
            return await operation()


class TaskService:
    def __init__(
        self, storage: StorageClient, locks: KeyLocks, authorizer: Authorizer, clock: Callable[[], float] = time.time
    ) -> None:
        self._storage = storage
        self._locks = locks
        self._authorizer = authorizer
        self._clock = clock  # a task's creation time, which orders ListTasks
        self._index = task_index.TaskIndex(storage)
        self._kept = KeptRecords()
        """Task, function, use-counter and requirement records as last written or read here."""

    async def _rewrite(self, key: bytes, version: int, task: TaskState) -> None:
        """Write ``task`` over the version read; what was kept of it is dropped, so the next invoke
        decides on the record as stored rather than on one it would first find stale."""
        self._kept.forget(key)
        await self._storage.commit([Check(key, version), put(key, task)])

    async def _require(self, subject: Subject, action: Action, task: TaskState) -> None:
        await require(self._authorizer, subject, task_query(action, task))

    async def _load(self, task_id: ExternalId) -> tuple[TaskState, int]:
        """The task and its storage version."""
        (value,) = await self._storage.read([task_id.key])
        if value is None:
            raise InvalidTaskIdError()
        return TaskState.from_json(json.loads(value.value)), value.version

    async def create(
        self,
        subject: Subject,
        function_id: str,
        arguments_json: str,
        executor: str,
        inputs_ownership: Mapping[str, frozenset[str]],
        outputs_ownership: Mapping[str, frozenset[str]],
    ) -> str:
        """Checked in the reference's order: function, permission, executor and JSON, then the task rules;
        an executor that cannot run the function is refused here, not when the task runs."""
        parsed = parse_id(function_id, "function", InvalidFunctionIdError)
        reads = _KeptFirst(self._storage, self._kept)

        async def attempt() -> str:
            (function_value,) = await reads.read([parsed.key])
            function = decode(function_value, Function.from_json)
            if function is None:
                raise InvalidFunctionIdError()
            await require(self._authorizer, subject, function_query(Action.TASK_CREATE, function))
            chosen = executor_for(function.executor_type, executor)
            arguments = function_arguments_from_json(arguments_json)
            task = task_rules.new_task(
                function, parsed, subject.user_id, chosen, arguments, inputs_ownership, outputs_ownership, self._clock()
            )
            # Created on the function as it is: one changed or deleted meanwhile is decided again.
            ops: list[Op] = [
                Check.of(parsed.key, function_value),
                put(task.key, task),
                *await self._index.entries(task),
            ]
            self._kept.keep_written(ops, await self._storage.commit(ops), frozenset({task.key}))
            return task.external_id

        return await retrying(lambda: reads.attempt(attempt))

    async def get(self, subject: Subject, task_id: str) -> TaskState:
        task, _ = await self._load(parse_id(task_id, "task", InvalidTaskIdError))
        await self._require(subject, Action.TASK_READ, task)
        return task

    async def manifest(self, subject: Subject, task_id: str) -> TaskState:
        """The task (GetTask's rule: participants only) with its manifest: the one approved at
        invoke or, before that, the terms as they stand now with the approvals so far, so that a
        participant can see what they are asked to approve (the function's payload digest
        included, even of a private function they may not read)."""
        task = await self.get(subject, task_id)
        if task.manifest:
            return task
        function = decode(await self._storage.get(task.function_id.key), Function.from_json)
        if function is None:
            return task  # a deleted function leaves no terms: the task can never run
        return replace(task, manifest=manifest_for_task(task, function).to_bytes())

    async def list_tasks(
        self,
        subject: Subject,
        *,
        statuses: frozenset[TaskStatus],
        awaiting_approval: bool,
        page_size: int,
        after: bytes | None,
    ) -> tuple[list[tuple[bytes, TaskState]], bool]:
        """Up to ``page_size`` of the caller's tasks after index position ``after``, newest first,
        each with its position; and whether entries remain after the last one returned.

        Candidates come from the caller's index entries; the policy decides each one
        (``task.read``, and ``task.approve`` for the approval inbox), asked in one batch per
        chunk. The filters are applied to the task as stored now.
        """
        positions = await self._index.positions(subject.user_id, after)
        page: list[tuple[bytes, TaskState]] = []
        seen: set[bytes] = set()
        for start in range(0, len(positions), _LIST_CHUNK):
            chunk = [(at, task_index.task_key(at)) for at in positions[start : start + _LIST_CHUNK]]
            values = await self._storage.read([key for _, key in chunk])
            candidates: list[tuple[bytes, TaskState]] = []
            for (at, key), value in zip(chunk, values, strict=True):
                if value is None or key in seen:
                    continue  # a task no longer stored, or a second entry of one
                seen.add(key)
                task = TaskState.from_json(json.loads(value.value))
                if statuses and task.status not in statuses:
                    continue
                if awaiting_approval and not _awaits_approval(task, subject.user_id):
                    continue
                candidates.append((at, task))
            queries = [task_query(Action.TASK_READ, task) for _, task in candidates]
            if awaiting_approval:
                queries += [task_query(Action.TASK_APPROVE, task) for _, task in candidates]
            decisions = await self._authorizer.decide(subject, queries) if queries else []
            may_read, may_approve = decisions[: len(candidates)], decisions[len(candidates) :]
            for index, candidate in enumerate(candidates):
                if may_read[index] and (not awaiting_approval or may_approve[index]):
                    page.append(candidate)
                    if len(page) == page_size:
                        return page, candidate[0] != positions[-1]
        return page, False

    async def wait(self, subject: Subject, task_id: str, timeout_ms: int, return_if_stuck: bool = False) -> TaskState:
        """The task once it has ended, or as it is when ``timeout_ms`` (at most 60 s) has passed;
        with ``return_if_stuck``, also as soon as it cannot end unless someone acts (:func:`_stuck`).

        Woken by storage when the task's record changes, so there is no polling.
        """
        parsed = parse_id(task_id, "task", InvalidTaskIdError)
        task, version = await self._load(parsed)
        await self._require(subject, Action.TASK_READ, task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds(timeout_ms)
        while not task.status.is_ended and not (return_if_stuck and _stuck(task)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            value = await self._storage.watch(parsed.key, version, remaining)
            if value is None:
                raise InvalidTaskIdError()
            if value.version <= version:
                break  # the watch timed out
            version = value.version
            task = TaskState.from_json(json.loads(value.value))
        return task

    async def assign_data(
        self, subject: Subject, task_id: str, inputs: Sequence[tuple[str, str]], outputs: Sequence[tuple[str, str]]
    ) -> None:
        """Assign files to the task's data names; one refused file and nothing is written (§8.3)."""
        parsed = parse_id(task_id, "task", InvalidTaskIdError)

        async def attempt() -> None:
            async with self._locks.hold(parsed.key):
                task, version = await self._load(parsed)
                await self._require(subject, Action.TASK_ASSIGN, task)
                if task.status is not TaskStatus.CREATED:
                    raise FailedOperationError("failed to assign data to task")
                items, unparsable = _parse_data_ids([("input", *i) for i in inputs] + [("output", *o) for o in outputs])
                values = await self._storage.read([i[2].key for i in items if i[2].prefix == i[0]])
                found = iter(values)
                files: list[InputFile | OutputFile | None] = []
                queries: list[Query] = []
                assigned = {("input", n) for n in task.assigned_inputs} | {("output", n) for n in task.assigned_outputs}
                for kind, name, data_id in items:
                    value = next(found) if data_id.prefix == kind else None
                    if value is None:
                        files.append(None)  # the answer is decided here: nothing after it is asked
                        break
                    decoded = json.loads(value.value)
                    file = InputFile.from_json(decoded) if kind == "input" else OutputFile.from_json(decoded)
                    files.append(file)
                    queries.append(
                        assignment_query(task, kind, name, str(data_id), file.owner, (kind, name) in assigned)
                    )
                    assigned.add((kind, name))
                allowed = iter(await self._authorizer.decide(subject, queries))
                assigned_inputs = dict(task.assigned_inputs)
                assigned_outputs = dict(task.assigned_outputs)
                for (_, name, _), file in zip(items, files, strict=False):
                    if file is None:
                        raise InvalidDataIdError()
                    if not next(allowed):
                        raise denied()
                    if isinstance(file, InputFile):
                        assigned_inputs[name] = file
                    else:
                        assigned_outputs[name] = file
                if unparsable is not None:
                    raise unparsable
                task = replace(task, assigned_inputs=assigned_inputs, assigned_outputs=assigned_outputs)
                status = TaskStatus.DATA_ASSIGNED if task.all_data_assigned else TaskStatus.CREATED
                await self._rewrite(task.key, version, _settle(task, status))

        await retrying(attempt)

    async def approve(self, subject: Subject, task_id: str) -> None:
        parsed = parse_id(task_id, "task", InvalidTaskIdError)

        async def attempt() -> None:
            async with self._locks.hold(parsed.key):
                task, version = await self._load(parsed)
                ready = task.status is TaskStatus.DATA_ASSIGNED or (
                    task.status is TaskStatus.CREATED and task.all_data_assigned
                )
                if not ready:
                    raise FailedOperationError("failed to approve task")
                await self._require(subject, Action.TASK_APPROVE, task)
                # The approval binds the terms as they are now: what runs must match them.
                # (A deleted function leaves nothing to bind, and its task can never be invoked.)
                function = decode(await self._storage.get(task.function_id.key), Function.from_json)
                approvals = dict(task.approvals)
                if function is not None:
                    approvals[subject.user_id] = manifest_for_task(task, function).terms_hash
                changed = subject.user_id not in task.approved_users or approvals != task.approvals
                task = replace(task, approved_users=task.approved_users | {subject.user_id}, approvals=approvals)
                if changed:  # approving the same terms again is not another step
                    task = with_event(task, TaskEvent(time.time(), APPROVAL, subject.user_id))
                status = TaskStatus.APPROVED if task.all_approved else TaskStatus.DATA_ASSIGNED
                await self._rewrite(task.key, version, _settle(task, status))

        await retrying(attempt)

    async def invoke(self, subject: Subject, task_id: str) -> None:
        """Stage the task for execution (§8.5): task, counter and queue change in one commit.

        The policy is asked, in one round trip, whether the caller may invoke the task, whether
        the function has a use left, and whether the task may be staged; the answers are
        applied in the reference's order.
        """
        parsed = parse_id(task_id, "task", InvalidTaskIdError)
        reads = _KeptFirst(self._storage, self._kept)

        async def attempt() -> None:
            async with self._locks.hold(parsed.key):
                (task_value,) = await reads.read([parsed.key])
                if task_value is None:
                    raise InvalidTaskIdError()
                task, version = TaskState.from_json(json.loads(task_value.value)), task_value.version
                counter_key = usage_key(task.function_id.uuid)
                requirements = requirements_key(task.function_id.uuid)
                async with self._locks.hold(counter_key):
                    function_value, usage_value, requirements_value = await reads.read(
                        [task.function_id.key, counter_key, requirements]
                    )
                    function = decode(function_value, Function.from_json)
                    usage = decode(usage_value, FunctionUsage.from_json)
                    queries = [task_query(Action.TASK_INVOKE, task)]
                    if function is not None and usage is not None:
                        queries.append(function_query(Action.FUNCTION_INVOKE, function, usage.use_numbers))
                        queries.append(task_query(Action.TASK_STAGE, task))
                    may_invoke, *staging = await self._authorizer.decide(subject, queries)
                    if not may_invoke:
                        raise denied()
                    if function is None or usage is None:
                        raise InvalidFunctionIdError()
                    has_use_left, may_stage = staging
                    if not has_use_left:
                        raise FailedOperationError("function quota has been used up")
                    if not (may_stage and _ready_to_stage(task)):
                        raise FailedOperationError(_not_ready(task))
                    task = _with_invoker_approval(task, function, subject.user_id)
                    manifest = manifest_for_task(task, function).to_bytes()
                    # Kept with the task: its receipt binds only the manifest's hash.
                    staged_task = transition(replace(task, manifest=manifest), TaskStatus.STAGED, by=Actor.MANAGEMENT)
                    requires = tuple(json.loads(requirements_value.value)) if requirements_value else ()
                    staged = StagedTask.for_task(task, function, subject.user_id, manifest)
                    record = encode(staged_task)
                    element = StagedElement(replace(staged, trace=tracing.current_traceparent()), requires, record)
                    ops: list[Op] = [
                        Check(task.key, version),
                        Check.of(task.function_id.key, function_value),
                        Check.of(counter_key, usage_value),
                        Check.of(requirements, requirements_value),
                        Put(task.key, record),
                        put(counter_key, replace(usage, use_numbers=usage.use_numbers + 1)),
                        Enqueue(STAGED_TASK_QUEUE, encode(element)),
                    ]
                    try:
                        written = await self._storage.commit(ops)
                    except BaseException:
                        self._kept.forget(task.key, counter_key)  # written or not: unknown
                        raise
                    # The task is the scheduler's from here; the counter is needed by the next invoke.
                    self._kept.forget(task.key)
                    self._kept.keep_written(ops, written, frozenset({counter_key}))

        await retrying(lambda: reads.attempt(attempt))

    async def cancel(self, subject: Subject, task_id: str) -> None:
        """Cancel before staging here; a staged or running task is cancelled by the scheduler."""
        parsed = parse_id(task_id, "task", InvalidTaskIdError)

        async def attempt() -> None:
            async with self._locks.hold(parsed.key):
                task, version = await self._load(parsed)
                await self._require(subject, Action.TASK_CANCEL, task)
                if task.status in (TaskStatus.STAGED, TaskStatus.RUNNING):
                    await self._storage.commit([Enqueue(CANCEL_QUEUE, encode(task))])
                elif task.status in _PENDING:
                    reason = TaskResult.err(REASON_CANCELED_BEFORE_STAGING)
                    canceled = transition(task, TaskStatus.CANCELED, by=Actor.MANAGEMENT, result=reason)
                    await self._rewrite(task.key, version, canceled)
                else:
                    raise FailedOperationError("failed to cancel task, reason: task has already been canceled")

        await retrying(attempt)

    async def reject(self, subject: Subject, task_id: str) -> None:
        """A participant declines the task before it is invoked: it ends Canceled, naming them.

        Cloister's addition: otherwise a participant could decline only by never approving,
        and the task's creator would not learn it.
        """
        parsed = parse_id(task_id, "task", InvalidTaskIdError)

        async def attempt() -> None:
            async with self._locks.hold(parsed.key):
                task, version = await self._load(parsed)
                await self._require(subject, Action.TASK_REJECT, task)
                if task.status not in _PENDING:
                    raise FailedOperationError(
                        f"failed to reject task, reason: it is already {task.status.wire_name}; "
                        "a task can be rejected only before it is invoked"
                    )
                reason = TaskResult.err(REASON_REJECTED_BY + subject.user_id)
                rejected = transition(task, TaskStatus.CANCELED, by=Actor.MANAGEMENT, result=reason)
                await self._rewrite(task.key, version, rejected)

        await retrying(attempt)


def _with_invoker_approval(task: TaskState, function: Function, user_id: str) -> TaskState:
    """Invoking approves the terms as they are now for a participant who has not approved yet (the
    only participant of a single-party task); an earlier approval is never replaced, so terms
    changed after it no longer match it and the execution service refuses the task."""
    if user_id not in task.participants or user_id in task.approvals:
        return task
    return replace(task, approvals={**task.approvals, user_id: manifest_for_task(task, function).terms_hash})


def _settle(task: TaskState, status: TaskStatus) -> TaskState:
    """The task at ``status``: a transition when that is a change, the task as it is otherwise."""
    return task if task.status is status else transition(task, status, by=Actor.MANAGEMENT)


def _stuck(task: TaskState) -> bool:
    """Whether ``task`` can end only once someone acts: not invoked yet, or waiting for an execution service."""
    return task.status < TaskStatus.STAGED or task.waiting_reason is not None


def _ready_to_stage(task: TaskState) -> bool:
    """Where the state machine allows staging; who has approved is the policy's question."""
    if task.status in (TaskStatus.APPROVED, TaskStatus.DATA_ASSIGNED):
        return True
    return task.status is TaskStatus.CREATED and task.all_data_assigned


def _awaits_approval(task: TaskState, user_id: str) -> bool:
    """The task still needs ``user_id``'s approval: not yet approved by them, and not yet past approval."""
    return (
        task.status in _AWAITING_APPROVAL
        and len(task.participants) > 1
        and user_id in task.participants
        and user_id not in task.approved_users
    )


def _not_ready(task: TaskState) -> str:
    """The reference's refusal, then what is missing. Only the creator, a participant who sees all
    of this in GetTask anyway, gets this far, so naming the others discloses nothing new."""
    if task.status not in _PENDING:
        return f"failed to invoke task: it is already {task.status.wire_name}"
    missing = []
    unassigned_inputs = sorted(set(task.inputs_ownership) - set(task.assigned_inputs))
    unassigned_outputs = sorted(set(task.outputs_ownership) - set(task.assigned_outputs))
    not_approved = sorted(task.participants - task.approved_users) if len(task.participants) > 1 else []
    if unassigned_inputs:
        missing.append("no file assigned to input " + ", ".join(unassigned_inputs))
    if unassigned_outputs:
        missing.append("no file assigned to output " + ", ".join(unassigned_outputs))
    if not_approved:
        missing.append("not approved by " + ", ".join(not_approved))
    if not missing:
        return "failed to invoke task: the access policy does not allow it to run"
    return "failed to invoke task: " + "; ".join(missing)


def _parse_data_ids(
    requested: list[tuple[str, str, str]],
) -> tuple[list[tuple[str, str, ExternalId]], CloisterError | None]:
    """Parse ids up to the first that does not parse; its error is raised after the ones before it
    are checked, so the first broken entry decides the answer, as in the reference."""
    items: list[tuple[str, str, ExternalId]] = []
    for kind, name, data_id in requested:
        try:
            items.append((kind, name, ExternalId.parse(data_id)))
        except InvalidArgumentError:
            return items, InvalidArgumentError(
                f"{kind}s: data id {quoted(data_id)} for {quoted(name)} is not an {kind} id "
                f"({kind}-<uuid>, as Register{kind.title()}File answers)"
            )
    return items, None
