"""The approvals inbox, the task list and each task's page with its actions."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from cloister.attestation.receipts import VerifiedReceipt
from cloister.console.kit import PageKit
from cloister.console.link import Participant
from cloister.errors import AttestationError, AuthenticationError, CloisterError, StatusCode
from cloister.model.tasks import TaskStatus
from cloister.model.views import Function, Task
from cloister.sdk._functions import FunctionHandle
from cloister.sdk._receipts import Receipt, ReceiptAnswer, fetch_receipt_answer
from cloister.sdk._tasks import TaskHandle, TasksAPI

ACTIONS: dict[str, Callable[[TaskHandle], None]] = {
    "approve": TaskHandle.approve,
    "invoke": TaskHandle.invoke,
    "cancel": TaskHandle.cancel,
    "reject": TaskHandle.reject,
}
"""What a task's buttons post, by the last part of their path."""
MAX_SOURCE_BYTES = 256 * 1024
"""A Python function's source is shown up to this size; beyond it, only its digest."""
POLL_SECONDS = 1.0
"""How often an open task page's stream reads the task again."""
KEEPALIVE_SECONDS = 15.0
MAX_EVENT_STREAMS = 500
"""Open task pages the console follows at once; more are refused (each reads its task every second)."""
MAX_EVENT_STREAMS_PER_USER = 20
"""... and of one user, so that one user cannot take them all."""


@dataclass(frozen=True)
class TaskDetails:
    """A task and what the signed-in user may see of its function."""

    task: Task
    function: Function | None
    """None when the user may not read the function (a private one they are not allowed to use)."""
    payload_sha256: str | None
    source: str | None
    """The function's code as text (Python), when the user may read it and it is not too long to show."""
    payload_bytes: int = 0

    @property
    def arguments_json(self) -> str:
        return json.dumps(dict(self.task.arguments), indent=2, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class ReceiptCheck:
    """What the console made of an ended task's receipt: what it proves, or why it proves nothing."""

    verified: VerifiedReceipt | None
    problem: str | None = None


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_EVENT_LINES = re.compile(r"\r\n|\r|\n")


class TaskPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit
        self.inbox = kit.as_user(self._inbox)
        self.list = kit.as_user(self._list)
        self.task = kit.as_user(self._task)
        self.act = kit.as_user(self._act)
        self.events = kit.as_user(self._events)
        self.receipt = kit.as_user(self._receipt)
        self._streams = StreamCount(MAX_EVENT_STREAMS, MAX_EVENT_STREAMS_PER_USER)

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
        view = await run_in_threadpool(task_view, participant, request.path_params["task_id"])
        return self._kit.render(request, "task.html", view, user=participant)

    async def _receipt(self, request: Request, participant: Participant) -> Response:
        """The task's receipt (``receipt``) or its manifest (``manifest``) as a file, to check offline."""
        task_id, part = request.path_params["task_id"], request.url.path.rsplit("/", 1)[-1]
        receipt = TaskHandle(participant, task_id).receipt()
        try:
            token, manifest = await run_in_threadpool(lambda: (receipt.token, receipt.manifest))
        except AttestationError as exc:
            return self._kit.error(request, 404, exc.message, participant)
        name = _SAFE_NAME.sub("_", task_id)[:100]
        if part == "receipt":
            body, kind, filename = token.encode() + b"\n", "application/jose", f"{name}.receipt.jws"
        elif part == "manifest" and manifest is not None:
            body, kind, filename = manifest, "application/json", f"{name}.manifest.json"
        else:
            return self._kit.error(request, 404, "This task's receipt has no manifest.", participant)
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        return Response(body, media_type=kind, headers=headers)

    async def _events(self, request: Request, participant: Participant) -> Response:
        """The task's view as server-sent events: one now, one on every change, and ``ended``
        once it has ended. Short calls on a timer rather than a long poll, so an open page never
        holds one of the worker threads every page shares; the function is read once per stream."""
        task_id = request.path_params["task_id"]
        if not self._streams.open(participant.user_id):
            return self._kit.error(request, 503, "Too many live task pages are open; reload this one later.")
        try:
            # The first read happens here, so a task the user may not see is refused as a page is.
            first = await run_in_threadpool(task_view, participant, task_id)
        except BaseException:
            self._streams.close(participant.user_id)
            raise
        csrf, _ = self._kit.guard.csrf_token(request)
        template = self._kit.templates.get_template("_task_view.html")

        async def events() -> AsyncIterator[str]:
            try:
                view, shown, quiet = first, None, 0.0
                while True:
                    html = template.render({**view, "csrf": csrf, "me": participant})
                    if html != shown:
                        yield _event("task", html)
                        shown, quiet = html, 0.0
                    elif quiet >= KEEPALIVE_SECONDS:
                        yield ": still here\n\n"
                        quiet = 0.0
                    if view["item"].task.is_ended:
                        yield _event("ended", "")
                        return
                    await asyncio.sleep(POLL_SECONDS)
                    quiet += POLL_SECONDS
                    try:
                        view = await run_in_threadpool(task_view, participant, task_id, view["item"])
                    except AuthenticationError:
                        yield _event("task", self._kit.templates.get_template("_session_ended.html").render())
                        yield _event("ended", "")
                        return
            finally:
                self._streams.close(participant.user_id)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def _act(self, request: Request, participant: Participant) -> Response:
        form = await self._kit.checked_form(request)
        task_id, action = request.path_params["task_id"], request.path_params["action"]
        act = ACTIONS.get(action)
        if act is None:
            return self._kit.error(request, 404, "There is no such action.", participant)
        await run_in_threadpool(act, TaskHandle(participant, task_id))
        back = "/inbox" if form.get("back") == "inbox" else f"/tasks/{task_id}"
        return RedirectResponse(back, status_code=303)


class StreamCount:
    """Open event streams, in all and per user: a stream is counted from the moment it is let in."""

    def __init__(self, limit: int, per_user: int) -> None:
        self._limit = limit
        self._per_user = per_user
        self._open: collections.Counter[str] = collections.Counter()

    def open(self, user_id: str) -> bool:
        """Count one more stream for ``user_id``; False (and nothing counted) over either limit."""
        if self._open.total() >= self._limit or self._open[user_id] >= self._per_user:
            return False
        self._open[user_id] += 1
        return True

    def close(self, user_id: str) -> None:
        self._open[user_id] -= 1
        if self._open[user_id] <= 0:
            del self._open[user_id]


def task_view(participant: Participant, task_id: str, known: TaskDetails | None = None) -> dict[str, Any]:
    """What a task's page shows: ``item`` (the task with its function) and ``allowed`` (the
    actions open to this user). With ``known``, the function is taken from it, not read again."""
    task = TaskHandle(participant, task_id).describe()
    item = details(participant, task) if known is None else replace(known, task=task)
    task = item.task
    allowed = {
        "approve": participant.user_id in task.missing_approvals,
        "invoke": participant.user_id == task.creator and not task.is_invoked,
        "cancel": participant.user_id == task.creator and not task.is_ended,  # access control's rule too
        # Others decline with Reject, which the creator has Cancel for.
        "reject": participant.user_id in task.participants - {task.creator} and not task.is_invoked,
    }
    answer = fetch_receipt_answer(participant, task_id)  # the timeline, and the receipt once it has ended
    receipt = check_receipt(participant, task, answer) if task.is_ended else None
    return {"item": item, "allowed": allowed, "receipt": receipt, "timeline": answer.timeline}


def check_receipt(participant: Participant, task: Task, answer: ReceiptAnswer) -> ReceiptCheck | None:
    """The ended ``task``'s receipt, checked against the deployment's trust files as any
    participant would check it offline; None for a task that never ran (nothing signs one)."""
    receipt = Receipt(fetch=lambda: (answer.receipt, answer.manifest))
    try:
        receipt.token  # noqa: B018 - fetches it
    except AttestationError as exc:
        return None if task.status is TaskStatus.CANCELED else ReceiptCheck(None, exc.message)
    try:
        return ReceiptCheck(receipt.verify(participant.link.trust))
    except AttestationError as exc:
        return ReceiptCheck(None, exc.message)


def _event(name: str, html: str) -> str:
    """One server-sent event: its name, then the HTML a line of data at a time."""
    # Split only where the event stream ends lines (CR, LF, CRLF): str.splitlines would also
    # split at U+2028 or U+0085 in a value, and the page would show a line break there instead.
    data = "".join(f"data: {line}\n" for line in _EVENT_LINES.split(html))
    return f"event: {name}\n{data}\n"


def details(participant: Participant, task: Task) -> TaskDetails:
    """``task`` with what the user may read of its function. The payload's digest comes from the
    task's terms, which every participant reads even when the function is private to others."""
    try:
        function: Function | None = FunctionHandle(participant, task.function_id).get()
    except CloisterError as exc:
        if exc.status is StatusCode.UNAUTHENTICATED:
            raise
        function = None
    if function is not None and function.payload:
        digest = hashlib.sha256(function.payload).hexdigest()
        return TaskDetails(task, function, digest, shown_source(function), len(function.payload))
    terms = TaskHandle(participant, task.id).terms()
    return TaskDetails(task, function, terms.payload_sha256 if terms else None, None)


def shown_source(function: Function) -> str | None:
    """A Python function's code as text, unless it is longer than a page shows."""
    if function.executor_type != "python" or not function.payload or len(function.payload) > MAX_SOURCE_BYTES:
        return None
    return function.payload.decode("utf-8", "replace")
