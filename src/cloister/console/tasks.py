"""The approvals inbox, the task list and each task's page with its actions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cloister.console.kit import PageKit
from cloister.console.link import Participant
from cloister.errors import CloisterError, StatusCode
from cloister.model.tasks import TaskStatus
from cloister.model.views import Function, Task
from cloister.sdk._functions import FunctionHandle
from cloister.sdk._tasks import TaskHandle, TasksAPI

ACTIONS: dict[str, Callable[[TaskHandle], None]] = {
    "approve": TaskHandle.approve,
    "invoke": TaskHandle.invoke,
    "cancel": TaskHandle.cancel,
}
"""What a task's buttons post, by the last part of their path."""
MAX_SOURCE_BYTES = 256 * 1024
"""A Python function's source is shown up to this size; beyond it, only its digest."""


@dataclass(frozen=True)
class TaskDetails:
    """A task and what the signed-in user may see of its function."""

    task: Task
    function: Function | None
    """None when the user may not read the function (a private one they are not allowed to use)."""
    payload_sha256: str | None
    source: str | None
    """The function's code as text (Python), when the user may read it."""

    @property
    def arguments_json(self) -> str:
        return json.dumps(dict(self.task.arguments), indent=2, sort_keys=True, ensure_ascii=False)


class TaskPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit
        self.inbox = kit.as_user(self._inbox)
        self.list = kit.as_user(self._list)
        self.task = kit.as_user(self._task)
        self.act = kit.as_user(self._act)

    async def _inbox(self, request: Request, participant: Participant) -> Response:
        def load() -> list[TaskDetails]:
            waiting = TasksAPI(participant).list(awaiting_my_approval=True)
            return [details(participant, task) for task in waiting]

        return self._kit.render(request, "inbox.html", {"items": await run_in_threadpool(load)}, user=participant)

    async def _list(self, request: Request, participant: Participant) -> Response:
        chosen = request.query_params.get("status") or ""
        try:
            status = TaskStatus.from_wire_name(chosen) if chosen else None
        except KeyError:
            return self._kit.error(request, 400, f"There is no task status {chosen!r}.", participant)
        found = await run_in_threadpool(lambda: TasksAPI(participant).list(status=status))
        context = {"tasks": found, "statuses": [s.wire_name for s in TaskStatus], "chosen": chosen}
        return self._kit.render(request, "tasks.html", context, user=participant)

    async def _task(self, request: Request, participant: Participant) -> Response:
        task_id = request.path_params["task_id"]
        item = await run_in_threadpool(lambda: details(participant, TaskHandle(participant, task_id).describe()))
        task = item.task
        allowed = {
            "approve": participant.user_id in task.missing_approvals,
            "invoke": participant.user_id == task.creator and not task.is_invoked,
            "cancel": not task.is_ended,
        }
        return self._kit.render(request, "task.html", {"item": item, "allowed": allowed}, user=participant)

    async def _act(self, request: Request, participant: Participant) -> Response:
        form = await self._kit.checked_form(request)
        task_id, action = request.path_params["task_id"], request.path_params["action"]
        act = ACTIONS.get(action)
        if act is None:
            return self._kit.error(request, 404, "There is no such action.", participant)
        await run_in_threadpool(act, TaskHandle(participant, task_id))
        back = "/inbox" if form.get("back") == "inbox" else f"/tasks/{task_id}"
        return RedirectResponse(back, status_code=303)


def details(participant: Participant, task: Task) -> TaskDetails:
    """``task`` with what the user may read of its function."""
    try:
        function = FunctionHandle(participant, task.function_id).get()
    except CloisterError as exc:
        if exc.status is StatusCode.UNAUTHENTICATED:
            raise
        return TaskDetails(task, None, None, None)
    if not function.payload:
        return TaskDetails(task, function, None, None)
    digest = hashlib.sha256(function.payload).hexdigest()
    source = None
    if function.executor_type == "python" and len(function.payload) <= MAX_SOURCE_BYTES:
        source = function.payload.decode("utf-8", "replace")
    return TaskDetails(task, function, digest, source)
