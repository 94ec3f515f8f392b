"""Tasks: create, assign data, approve, invoke, cancel, read and wait for them (§8.2-§8.7).

A task is rewritten only while its key's lock is held, so two participants approving at the
same moment both count. InvokeTask stages the task, counts the use and enqueues the staged
task in one commit: either the task runs and is counted, or neither happens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace

from cloister.errors import (
    CloisterError,
    FailedOperationError,
    InvalidArgumentError,
    InvalidDataIdError,
    InvalidFunctionIdError,
    InvalidTaskIdError,
    MalformedRequestError,
)
from cloister.model.files import InputFile, OutputFile
from cloister.model.functions import Function, FunctionUsage, parse_executor
from cloister.model.ids import ExternalId, requirements_key, usage_key
from cloister.model.roles import Role
from cloister.model.tasks import (
    REASON_CANCELED_BEFORE_STAGING,
    StagedElement,
    StagedTask,
    TaskResult,
    TaskState,
    TaskStatus,
)
from cloister.rpc.convert.tasks import function_arguments_from_json
from cloister.services.management import permissions, task_rules
from cloister.services.management.locks import KeyLocks
from cloister.services.management.records import (
    CANCEL_QUEUE,
    STAGED_TASK_QUEUE,
    decode,
    encode,
    parse_id,
    put,
    read_many,
)
from cloister.storage.client import StorageClient
from cloister.storage.ops import Enqueue, Put

MAX_WAIT_SECONDS = 60.0
_PENDING = (TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED, TaskStatus.APPROVED)


class TaskService:
    def __init__(self, storage: StorageClient, locks: KeyLocks) -> None:
        self._storage = storage
        self._locks = locks

    async def _load(self, task_id: ExternalId) -> tuple[TaskState, int]:
        """The task and its storage version."""
        (value,) = await self._storage.read([task_id.key])
        task = decode(value, TaskState.from_json)
        if value is None or task is None:
            raise InvalidTaskIdError()
        return task, value.version

    async def create(
        self,
        user_id: str,
        role: Role,
        function_id: str,
        arguments_json: str,
        executor: str,
        inputs_ownership: Mapping[str, frozenset[str]],
        outputs_ownership: Mapping[str, frozenset[str]],
    ) -> str:
        """Checked in the reference's order: function, role, executor and JSON, then the task rules."""
        parsed = parse_id(function_id, "function", InvalidFunctionIdError)
        function = decode(await self._storage.get(parsed.key), Function.from_json)
        if function is None:
            raise InvalidFunctionIdError()
        permissions.check_create_task(function, role)
        executor = parse_executor(executor)
        arguments = function_arguments_from_json(arguments_json)
        task = task_rules.new_task(function, parsed, user_id, executor, arguments, inputs_ownership, outputs_ownership)
        await self._storage.commit([put(task.key, task)])
        return task.external_id

    async def get(self, user_id: str, task_id: str) -> TaskState:
        task, _ = await self._load(parse_id(task_id, "task", InvalidTaskIdError))
        permissions.check_task_participant(task, user_id)
        return task

    async def wait(self, user_id: str, task_id: str, timeout_ms: int) -> TaskState:
        """The task once it has ended, or as it is when ``timeout_ms`` (at most 60 s) has passed.

        Woken by storage when the task's record changes, so there is no polling.
        """
        parsed = parse_id(task_id, "task", InvalidTaskIdError)
        task, version = await self._load(parsed)
        permissions.check_task_participant(task, user_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout_ms / 1000, MAX_WAIT_SECONDS)
        while not task.status.is_ended:
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
        self, user_id: str, task_id: str, inputs: Sequence[tuple[str, str]], outputs: Sequence[tuple[str, str]]
    ) -> None:
        """Assign files to the task's data names; one broken rule and nothing is written (§8.3)."""
        parsed = parse_id(task_id, "task", InvalidTaskIdError)
        async with self._locks.hold(parsed.key):
            task, _ = await self._load(parsed)
            permissions.check_task_participant(task, user_id)
            if task.status is not TaskStatus.CREATED:
                raise FailedOperationError("failed to assign data to task")
            items, unparsable = _parse_data_ids([("input", *i) for i in inputs] + [("output", *o) for o in outputs])
            values = await read_many(self._storage, [i[2].key for i in items if i[2].prefix == i[0]])
            found = iter(values)
            assigned_inputs = dict(task.assigned_inputs)
            assigned_outputs = dict(task.assigned_outputs)
            for kind, name, data_id in items:
                value = next(found) if data_id.prefix == kind else None
                if value is None:
                    raise InvalidDataIdError()
                if kind == "input":
                    file_in = InputFile.from_json(json.loads(value.value))
                    permissions.check_assign_data(user_id, name, file_in.owner, task.inputs_ownership, assigned_inputs)
                    assigned_inputs[name] = file_in
                else:
                    file_out = OutputFile.from_json(json.loads(value.value))
                    permissions.check_assign_data(
                        user_id, name, file_out.owner, task.outputs_ownership, assigned_outputs
                    )
                    assigned_outputs[name] = file_out
            if unparsable is not None:
                raise unparsable
            task = replace(task, assigned_inputs=assigned_inputs, assigned_outputs=assigned_outputs)
            status = TaskStatus.DATA_ASSIGNED if task.all_data_assigned else TaskStatus.CREATED
            await self._storage.commit([put(task.key, task.with_status(status))])

    async def approve(self, user_id: str, task_id: str) -> None:
        parsed = parse_id(task_id, "task", InvalidTaskIdError)
        async with self._locks.hold(parsed.key):
            task, _ = await self._load(parsed)
            ready = task.status is TaskStatus.DATA_ASSIGNED or (
                task.status is TaskStatus.CREATED and task.all_data_assigned
            )
            if not ready:
                raise FailedOperationError("failed to approve task")
            permissions.check_task_participant(task, user_id)
            task = replace(task, approved_users=task.approved_users | {user_id})
            status = TaskStatus.APPROVED if task.all_approved else TaskStatus.DATA_ASSIGNED
            await self._storage.commit([put(task.key, task.with_status(status))])

    async def invoke(self, user_id: str, task_id: str) -> None:
        """Stage the task for execution (§8.5): task, counter and queue change in one commit."""
        parsed = parse_id(task_id, "task", InvalidTaskIdError)
        async with self._locks.hold(parsed.key):
            task, _ = await self._load(parsed)
            permissions.check_task_creator(task, user_id)
            counter_key = usage_key(task.function_id.uuid)
            async with self._locks.hold(counter_key):
                function_value, usage_value, requirements_value = await self._storage.read(
                    [task.function_id.key, counter_key, requirements_key(task.function_id.uuid)]
                )
                function = decode(function_value, Function.from_json)
                usage = decode(usage_value, FunctionUsage.from_json)
                if function is None or usage is None:
                    raise InvalidFunctionIdError()
                if function.usage_quota is not None and function.usage_quota <= usage.use_numbers:
                    raise FailedOperationError("function quota has been used up")
                if not _can_stage(task):
                    raise FailedOperationError("failed to invoke task")
                staged_task = task.with_status(TaskStatus.STAGED)
                requires = tuple(json.loads(requirements_value.value)) if requirements_value else ()
                element = StagedElement(StagedTask.for_task(task, function, user_id), staged_task, requires)
                await self._storage.commit(
                    [
                        put(task.key, staged_task),
                        put(counter_key, replace(usage, use_numbers=usage.use_numbers + 1)),
                        Enqueue(STAGED_TASK_QUEUE, encode(element)),
                    ]
                )

    async def cancel(self, user_id: str, role: Role, task_id: str) -> None:
        """Cancel before staging here; a staged or running task is cancelled by the scheduler."""
        parsed = parse_id(task_id, "task", InvalidTaskIdError)
        async with self._locks.hold(parsed.key):
            task, _ = await self._load(parsed)
            permissions.check_cancel_task(task, user_id, role)
            if task.status in (TaskStatus.STAGED, TaskStatus.RUNNING):
                await self._storage.commit([Enqueue(CANCEL_QUEUE, encode(task))])
            elif task.status in _PENDING:
                canceled = task.with_status(TaskStatus.CANCELED, TaskResult.err(REASON_CANCELED_BEFORE_STAGING))
                await self._storage.commit([Put(task.key, encode(canceled))])
            else:
                raise FailedOperationError("failed to cancel task, reason: task has already been canceled")


def _can_stage(task: TaskState) -> bool:
    if task.status is TaskStatus.APPROVED:
        return True
    if task.status is TaskStatus.DATA_ASSIGNED:
        return task.all_approved
    if task.status is TaskStatus.CREATED:
        return task.all_data_assigned and task.all_approved
    return False


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
            return items, MalformedRequestError(f"cannot parse the data id given for {kind} {name!r}")
    return items, None
