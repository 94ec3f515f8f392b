"""The scheduler's in-memory state: pending tasks, assignments, executors, and per-task exclusion.

Everything here is synchronous and runs on the event loop's thread, so a check and the change
it guards (e.g. "pending, not busy" → "taken") cannot interleave with another coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from cloister.model.tasks import StagedTask
from cloister.storage.records import KeptRecords


@dataclass(eq=False)
class PendingTask:
    """A task waiting for an executor."""

    staged: StagedTask
    seq: int | None
    """Its element in the ``staged-task`` queue; None when published in memory only (PublishTask)."""
    requires: tuple[str, ...] = ()
    """Labels an execution service must offer to run it."""
    explained: bool = False
    """Whether why no live execution service can run it has been written to its record."""
    since: float = field(default_factory=time.monotonic)
    """When it was queued here (execution services get a moment to connect before it is explained)."""
    stored: bytes | None = field(default=None, repr=False)
    """Its record as staged, from its element (:attr:`~cloister.model.tasks.StagedElement.stored`)."""

    @property
    def task_id(self) -> uuid.UUID:
        return self.staged.task_id


@dataclass
class Assignment:
    """A task handed to an executor; mirrored by a ``scheduler-assignment-<uuid>`` record."""

    executor_id: str
    task_id: uuid.UUID
    last_present: float
    """When the executor last said it runs the task (or was handed it)."""
    offer: PendingTask | None = None
    """Set while a hand-out awaits the execution service's ConfirmTask: until then the task may go
    back to the queue (its answer may never have arrived); after it, the task is the service's to
    run or lose. None for confirmed tasks, Teaclave hand-outs and assignments restored from storage."""


@dataclass
class ExecutorRecord:
    """An execution service the scheduler has heard from."""

    executor_id: str
    last_seen: float
    kinds: frozenset[str] | None = None
    """What it runs (``builtin``, ``python``, ``wasm``); None for Teaclave executors: anything."""
    labels: frozenset[str] = frozenset()
    """Operator-set capabilities (``gpu``, ``large-memory``) that functions may require."""
    reports_running: bool = False
    """Cloister executors list their running tasks in every heartbeat; Teaclave ones do not."""
    cancels: set[uuid.UUID] = field(default_factory=set)
    """Assigned tasks cancelled since its last heartbeat answer."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """Answer its waiting heartbeats now."""
        self._wake.set()
        self._wake = asyncio.Event()

    @property
    def woken(self) -> asyncio.Event:
        """Set at the next :meth:`wake`; take it before checking, then wait on it."""
        return self._wake


class PendingQueue:
    """Staged tasks not yet handed out, in arrival order, with a wake-up for waiting pullers."""

    def __init__(self) -> None:
        self._items: OrderedDict[uuid.UUID, PendingTask] = OrderedDict()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._items

    def __iter__(self) -> Iterator[PendingTask]:
        return iter(list(self._items.values()))

    def get(self, task_id: uuid.UUID) -> PendingTask | None:
        return self._items.get(task_id)

    def push(self, item: PendingTask, *, front: bool = False) -> None:
        self._items[item.task_id] = item
        if front:
            self._items.move_to_end(item.task_id, last=False)
        self.notify()

    def remove(self, task_id: uuid.UUID) -> PendingTask | None:
        return self._items.pop(task_id, None)

    def take(self, accept: Callable[[PendingTask], bool], skip: Callable[[uuid.UUID], bool]) -> PendingTask | None:
        """Remove and return the oldest task ``accept`` takes that ``skip`` does not exclude."""
        for task_id, item in self._items.items():
            if not skip(task_id) and accept(item):
                del self._items[task_id]
                return item
        return None

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def changed(self) -> asyncio.Event:
        """Set when the queue next gains a task; take it before looking, then wait on it."""
        return self._changed


class TaskGuard:
    """At most one storage read-modify-write per task at a time in this scheduler.

    Task commits are conditional on the record being unchanged, so interleaving could not write
    a stale state; the guard keeps memory (pending, assignments) in step with each commit and
    spares the conflicts two operations on one task (a hand-out and a cancellation) would cause.
    """

    def __init__(self, on_release: Callable[[uuid.UUID], None] | None = None) -> None:
        self._busy: dict[uuid.UUID, asyncio.Event] = {}
        self._on_release = on_release

    def is_busy(self, task_id: uuid.UUID) -> bool:
        return task_id in self._busy

    def try_acquire(self, task_id: uuid.UUID) -> bool:
        if task_id in self._busy:
            return False
        self._busy[task_id] = asyncio.Event()
        return True

    def release(self, task_id: uuid.UUID) -> None:
        event = self._busy.pop(task_id, None)
        if event is not None:
            event.set()
            if self._on_release is not None:
                self._on_release(task_id)

    @contextlib.asynccontextmanager
    async def exclusive(self, task_id: uuid.UUID) -> AsyncIterator[None]:
        while (event := self._busy.get(task_id)) is not None:
            await event.wait()
        self._busy[task_id] = asyncio.Event()
        try:
            yield
        finally:
            self.release(task_id)


class SchedulerState:
    """All of the scheduler's memory; the storage records are the truth it is rebuilt from."""

    def __init__(self) -> None:
        self.pending = PendingQueue()
        self.assignments: dict[uuid.UUID, Assignment] = {}
        self.executors: dict[str, ExecutorRecord] = {}
        self.to_cancel: dict[uuid.UUID, int] = {}
        """Cancelled while Staged but before its staged element was read: task → cancel element."""
        self.written = KeptRecords()
        """Task records as this scheduler last wrote them (the hand-outs'), so that a result needs no read."""
        self.guard = TaskGuard(self._released)

    def _released(self, task_id: uuid.UUID) -> None:
        # A pending task skipped while busy can be handed out now: wake the waiting pullers.
        if task_id in self.pending:
            self.pending.notify()

    def see(
        self,
        executor_id: str,
        now: float,
        kinds: frozenset[str] | None = None,
        reports_running: bool = False,
        labels: frozenset[str] | None = None,
    ) -> ExecutorRecord:
        """Record that ``executor_id`` was heard from at ``now``; registers it on first contact."""
        record = self.executors.get(executor_id)
        if record is None:
            record = self.executors[executor_id] = ExecutorRecord(executor_id, now)
        record.last_seen = max(record.last_seen, now)
        if kinds is not None:
            record.kinds = kinds
        if labels is not None:
            record.labels = labels
        record.reports_running = record.reports_running or reports_running
        return record

    def assigned_to(self, executor_id: str) -> list[Assignment]:
        return [a for a in self.assignments.values() if a.executor_id == executor_id]
