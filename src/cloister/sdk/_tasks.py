"""Tasks: creating one, listing them, and the handle that drives one to its result.

Waiting never hangs on a task that cannot run: :meth:`TaskHandle.result` waits on the
frontend's ``WaitTask`` long poll, which answers as soon as the task ends, or at once while the
task cannot end unless someone acts (approvals, data, the invoke, an execution service able to
run it missing), which is then said at once.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import (
    ExecutorLostError,
    InvalidArgumentError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskNotReadyError,
)
from cloister.model.executors import SPELLINGS
from cloister.model.functions import parse_executor_type
from cloister.model.manifest import TaskManifest
from cloister.model.tasks import REASON_EXECUTOR_TIMEOUT, TaskStatus
from cloister.model.views import Task, TaskResult, TimelineEntry
from cloister.rpc.convert.views import task_from_proto
from cloister.rpc.long_poll import long_poll_deadline
from cloister.sdk._channel import CLOISTER_FRONTEND
from cloister.sdk._files import FileHandle
from cloister.sdk._functions import FunctionHandle
from cloister.sdk._receipts import Receipt, fetch_receipt, fetch_receipt_answer
from cloister.sdk._session import Caller, UserCaller

WAIT_SLICE_SECONDS = 15.0
"""The longest one WaitTask call waits before the task is looked at again."""
LIST_PAGE_SIZE = 100

Owners = Mapping[str, Iterable[str] | str]
"""Data name → its owners' user ids (one id alone will do)."""


def outcome_error(task: Task) -> TaskError:
    """The error a task that ended without a result stands for, naming who caused it."""
    reason = task.failure or f"task ended as {task.status.wire_name}"
    if task.status is TaskStatus.CANCELED:
        return TaskCancelledError(task.id, reason)
    if reason.startswith(REASON_EXECUTOR_TIMEOUT):
        return ExecutorLostError(task.id, reason)
    return TaskFailedError(task.id, reason)


class TaskHandle:
    """A task, by id: assign its data, approve, invoke, cancel, and wait for its result."""

    def __init__(self, session: Caller, task_id: str) -> None:
        self._session = session
        self.id = task_id

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"

    def assign(
        self,
        inputs: Mapping[str, FileHandle | str] | None = None,
        outputs: Mapping[str, FileHandle | str] | None = None,
    ) -> None:
        """Assign your registered files to the task's data names."""
        request = fe_pb.AssignDataRequest(task_id=self.id, inputs=_data_maps(inputs), outputs=_data_maps(outputs))
        self._session.frontend("AssignData", request)

    def approve(self) -> None:
        self._session.frontend("ApproveTask", fe_pb.ApproveTaskRequest(task_id=self.id))

    def invoke(self) -> None:
        """Start it (its creator only); refused while approvals or data are missing."""
        self._session.frontend("InvokeTask", fe_pb.InvokeTaskRequest(task_id=self.id))

    def cancel(self) -> None:
        self._session.frontend("CancelTask", fe_pb.CancelTaskRequest(task_id=self.id))

    def reject(self) -> None:
        """Decline it as one of its participants, before it is invoked: it ends Canceled, and its
        result says who rejected it (Cloister's; Teaclave has no such call)."""
        self._session.frontend("RejectTask", cpb.RejectTaskRequest(task_id=self.id), service=CLOISTER_FRONTEND)

    def describe(self) -> Task:
        return task_from_proto(self._session.frontend("GetTask", fe_pb.GetTaskRequest(task_id=self.id)))

    def status(self) -> TaskStatus:
        return self.describe().status

    def wait(self, timeout: float | None = None) -> Task:
        """The task once it has ended (Finished, Failed or Canceled), however it ended.

        Raises:
            TaskNotReadyError: it cannot run as it stands (see :meth:`result`).
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            wait = WAIT_SLICE_SECONDS
            if deadline is not None:
                wait = min(wait, max(0.001, deadline - time.monotonic()))
            # The first call answers at once if the task cannot run as it stands, so what is
            # missing is said at once without a GetTask first. Later ones wait out their slice: a
            # waiting reason that comes and goes (a scheduler that just took over, before the
            # execution services found it) is judged only where the slice ends.
            request = cpb.WaitTaskRequest(task_id=self.id, timeout_ms=max(1, int(wait * 1000)), return_if_stuck=first)
            response = self._session.frontend(
                "WaitTask", request, service=CLOISTER_FRONTEND, timeout=long_poll_deadline(wait)
            )
            task, first = task_from_proto(response), False
            if task.is_ended:
                return task
            check_runnable(task, waiting_is_final=deadline is None)
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise TimeoutError(_timeout_message(task, timeout))

    def result(self, timeout: float | None = None) -> TaskResult:
        """The function's return value, output tags and log once the task finishes.

        Args:
            timeout: seconds to wait at most; None waits as long as the task can still run.

        Raises:
            TaskNotReadyError: at once, when the task is not invoked (naming the approvals and
                data still missing), or, without a ``timeout``, when no execution service can
                run it (its waiting reason).
            TaskFailedError: the function or its data failed.
            ExecutorLostError: its execution service stopped answering while running it.
            TaskCancelledError: a participant cancelled it.
            TimeoutError: ``timeout`` seconds passed first.
        """
        task = self.wait(timeout)
        if task.status is TaskStatus.FINISHED and task.result is not None:
            return replace(task.result, receipt=self.receipt())
        raise outcome_error(task)

    def terms(self) -> TaskManifest | None:
        """What its participants approve (or approved): the function with its payload's SHA-256,
        the arguments, the data and its owners, and the approvals so far. Before the task is
        invoked, the terms as they stand now; after, the manifest it was staged with. None when
        its function was deleted before it was invoked (it can never run)."""
        _, manifest = fetch_receipt(self._session, self.id)
        return TaskManifest.from_bytes(manifest) if manifest else None

    def timeline(self) -> tuple[TimelineEntry, ...]:
        """What happened to it, oldest first: when it was created, each status change and each
        approval (participants only, like :meth:`describe`)."""
        return fetch_receipt_answer(self._session, self.id).timeline

    def receipt(self) -> Receipt:
        """The task's signed receipt (:class:`~cloister.sdk._receipts.Receipt`), fetched when first used."""
        return Receipt(fetch=functools.partial(fetch_receipt, self._session, self.id))


def check_runnable(task: Task, *, waiting_is_final: bool) -> None:
    """Raise :class:`TaskNotReadyError` when waiting for ``task`` to end could last forever."""
    if not task.is_invoked:
        raise TaskNotReadyError(task.id, f"{task.status.wire_name}, not invoked; missing: {'; '.join(task.missing())}")
    if task.waiting_reason is not None and waiting_is_final:
        raise TaskNotReadyError(task.id, f"invoked but not started: {task.waiting_reason}")


def _timeout_message(task: Task, timeout: float | None) -> str:
    why = f" ({task.waiting_reason})" if task.waiting_reason else ""
    return f"task {task.id} is still {task.status.wire_name} after {timeout:g} s{why}"


def _data_maps(files: Mapping[str, FileHandle | str] | None) -> list[fe_pb.DataMap]:
    return [
        fe_pb.DataMap(data_name=name, data_id=file if isinstance(file, str) else file.id)
        for name, file in (files or {}).items()
    ]


def _owner_lists(owners: Owners | None) -> list[fe_pb.OwnerList]:
    return [
        fe_pb.OwnerList(data_name=name, uids=[uids] if isinstance(uids, str) else list(uids))
        for name, uids in (owners or {}).items()
    ]


def _statuses(status: TaskStatus | Iterable[TaskStatus] | None) -> list[Any]:
    """The wire's TaskStatus numbers (the stubs type them as their own enum)."""
    if status is None:
        return []
    if isinstance(status, int):
        return [int(TaskStatus(status))]
    return [int(TaskStatus(s)) for s in status]


def default_executor(executor_type: str) -> str:
    """The task executor that runs functions of ``executor_type`` (``python`` → ``mesapy``)."""
    function_type = parse_executor_type(executor_type)
    return next(s.executor for s in SPELLINGS.values() if s.function_type == function_type)


class TasksAPI:
    """``client.tasks``: create tasks, reach them by id, list yours."""

    def __init__(self, session: UserCaller) -> None:
        self._session = session

    def create(
        self,
        function: FunctionHandle | str,
        arguments: Mapping[str, Any] | None = None,
        *,
        inputs_ownership: Owners | None = None,
        outputs_ownership: Owners | None = None,
        executor: str | None = None,
    ) -> TaskHandle:
        """Create a task of ``function`` with ``arguments``; each data name's owners become participants.

        ``executor`` defaults to the one the function's executor type runs on: known to the
        handle that registered it, else read with one more call (which a user allowed to use a
        private function but not to read it is refused: pass ``executor`` then).
        """
        function_id = function if isinstance(function, str) else function.id
        if executor is None:
            known = None if isinstance(function, str) else function.executor_type
            executor_type = known or FunctionHandle(self._session, function_id).get().executor_type
            executor = default_executor(executor_type)
        request = fe_pb.CreateTaskRequest(
            function_id=function_id,
            function_arguments=json.dumps(dict(arguments or {})),
            executor=executor,
            inputs_ownership=_owner_lists(inputs_ownership),
            outputs_ownership=_owner_lists(outputs_ownership),
        )
        return TaskHandle(self._session, self._session.frontend("CreateTask", request).task_id)

    def get(self, task_id: str) -> TaskHandle:
        """The handle of a task created earlier (nothing is sent)."""
        return TaskHandle(self._session, task_id)

    def list(
        self,
        *,
        mine: bool = True,
        awaiting_my_approval: bool = False,
        status: TaskStatus | Iterable[TaskStatus] | None = None,
    ) -> list[Task]:
        """The tasks you take part in (as creator, function owner or data owner), newest first.

        Every page is fetched before it returns.

        Args:
            mine: must be True: nobody, the platform's administrators included, may see a task
                they take no part in, so there is no listing of everyone's tasks.
            awaiting_my_approval: only tasks still waiting for your approval (your inbox).
            status: only tasks in this status, or in one of these.
        """
        if not mine:
            raise InvalidArgumentError(
                "mine=False: nobody, administrators included, may list tasks they take no part in"
            )
        statuses = _statuses(status)
        tasks: list[Task] = []
        token = ""
        while True:
            request = cpb.ListTasksRequest(
                awaiting_my_approval=awaiting_my_approval, statuses=statuses, page_size=LIST_PAGE_SIZE, page_token=token
            )
            response = self._session.frontend("ListTasks", request, service=CLOISTER_FRONTEND)
            tasks.extend(task_from_proto(t) for t in response.tasks)
            token = response.next_page_token
            if not token:
                return tasks
