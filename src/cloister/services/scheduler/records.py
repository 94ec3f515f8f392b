"""The scheduler's storage records: assignment records, task and output records.

Task and output records use the JSON of reference §3.2 (``cloister.model``); assignment records
are Cloister's own: ``scheduler-assignment-<task uuid>`` = ``{"executor_id","task_id"}``.

Every change to a task record is committed on condition that the record is still the one the
change was decided on (:func:`rewrite_task`), so nothing can write an older state over a newer
one. That record is the one read from storage, or the one this scheduler last wrote itself
(:class:`~cloister.storage.records.KeptRecords`), which saves the read when nothing else wrote
the task since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from cloister.errors import ConflictError, InvalidArgumentError
from cloister.model.files import OutputFile
from cloister.model.tasks import REASON_CANCELED_BY_USER, Actor, TaskResult, TaskState, TaskStatus, transition
from cloister.storage.ops import Check, CheckValue, Op, Put, QueueItem, Versioned, Written
from cloister.storage.records import KeptRecords, decode, encode_json, put

ASSIGNMENT_PREFIX = b"scheduler-assignment"

logger = logging.getLogger(__name__)

T = TypeVar("T")
_REWRITE_ATTEMPTS = 3


class Storage(Protocol):
    """The part of :class:`~cloister.storage.client.StorageClient` the scheduler uses."""

    async def get(self, key: bytes) -> bytes | None: ...

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]: ...

    async def commit(self, ops: Sequence[Op]) -> Written: ...

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]: ...

    async def watch_queue(self, queue: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]: ...


def task_key(task_id: uuid.UUID) -> bytes:
    return f"task-{task_id}".encode()


def assignment_key(task_id: uuid.UUID) -> bytes:
    return ASSIGNMENT_PREFIX + f"-{task_id}".encode()


def assignment_value(executor_id: str, task_id: uuid.UUID) -> bytes:
    return encode_json({"executor_id": executor_id, "task_id": str(task_id)})


def parse_assignment(value: bytes) -> tuple[str, uuid.UUID]:
    """(executor id, task id) of an assignment record; ValueError when it is malformed."""
    try:
        data = json.loads(value)
        return str(data["executor_id"]), uuid.UUID(data["task_id"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed assignment record: {exc}") from None


def put_task(task: TaskState) -> Put:
    return put(task.key, task)


def cancel_ops(task: TaskState | None) -> list[Op]:
    """The write that ends a Staged or Running task as Canceled (reference §8.8); none for any other."""
    if task is None or task.status not in (TaskStatus.STAGED, TaskStatus.RUNNING):
        return []
    canceled = transition(task, TaskStatus.CANCELED, by=Actor.SCHEDULER, result=TaskResult.err(REASON_CANCELED_BY_USER))
    return [put_task(canceled)]


def put_output(output: OutputFile) -> Put:
    return put(output.external_id.encode(), output)


async def load_task(storage: Storage, task_id: uuid.UUID) -> TaskState | None:
    """The stored task, or None when there is none or it cannot be read (logged)."""
    task, _ = await load_task_versioned(storage, task_id)
    return task


async def load_task_versioned(storage: Storage, task_id: uuid.UUID) -> tuple[TaskState | None, int]:
    """The stored task (None when there is none or it cannot be read) and its storage version (0: none)."""
    (value,) = await storage.read([task_key(task_id)])
    return _task_of(task_id, value)


def _task_of(task_id: uuid.UUID, value: Versioned | None) -> tuple[TaskState | None, int]:
    if value is None:
        return None, 0
    try:
        return decode(value, TaskState.from_json), value.version
    except (KeyError, TypeError, ValueError) as exc:
        logger.error("task record %s is unreadable (%s: %s); treating it as absent", task_id, type(exc).__name__, exc)
        return None, value.version


async def rewrite_task(
    storage: Storage,
    task_id: uuid.UUID,
    decide: Callable[[TaskState | None], Awaitable[tuple[Sequence[Op], T]]],
    kept: KeptRecords | None = None,
    *,
    keep: bool = True,
    stored: bytes | None = None,
) -> T:
    """Let ``decide`` choose the commit from the task, and commit only if the record is unchanged.

    ``decide`` returns the operations to commit (none: nothing to write) and what to return. When
    the record changed between the read and the commit, it is read and decided again, so a
    decision is never made on a stale record.

    The first decision may be made without a read: on the record this scheduler last wrote, if
    ``kept`` has it, or else on ``stored``, the record as the commit that staged the task wrote it
    (its queue element carries it), committed on condition that storage still holds exactly those
    bytes. Any outcome of such a decision but a commit (a refusal, nothing to write, a conflict)
    is decided again on the record read from storage. The record a commit writes is kept in
    ``kept`` in turn, unless not to ``keep`` (a task's last write).

    Raises:
        ConflictError: the record kept changing for :data:`_REWRITE_ATTEMPTS` reads.
    """
    key = task_key(task_id)
    known = kept.known([key]) if kept is not None else None
    guess = _guess(key, known[0] if known else None, stored)
    if known and kept is not None:
        kept.forget(key)  # used once: kept again below only if the commit succeeds
    attempts = _REWRITE_ATTEMPTS + (guess is not None)
    for attempt in range(1, attempts + 1):
        guessed = guess is not None
        if guess is not None:
            (task, _), check = _task_of(task_id, guess[0]), guess[1]
            guess = None
        else:
            task, version = await load_task_versioned(storage, task_id)
            check = Check(key, version)
        try:
            ops, outcome = await decide(task)
        except Exception:
            if guessed:
                continue
            raise
        if not ops:
            if guessed:
                continue
            return outcome
        try:
            versions = await storage.commit([check, *ops])
        except ConflictError:
            if attempt == attempts:
                raise
            if not guessed:
                logger.info("task %s changed while it was being updated; deciding again", task_id)
            continue
        except InvalidArgumentError:
            if not guessed:
                raise
            continue  # a storage service older than CheckValue: decided again on the record as read
        if kept is not None and keep:
            kept.keep_written(ops, versions, frozenset({key}))
        return outcome
    raise AssertionError("unreachable")  # pragma: no cover


def _guess(key: bytes, kept: Versioned | None, stored: bytes | None) -> tuple[Versioned, Op] | None:
    """A record to decide on without reading it, and the check that it is still storage's."""
    if kept is not None:
        return kept, Check(key, kept.version)
    if stored is not None:
        return Versioned(stored, 0), CheckValue(key, hashlib.sha256(stored).digest())
    return None


async def load_outputs(storage: Storage, outputs: Sequence[OutputFile]) -> list[OutputFile | None]:
    """The standalone ``output-<uuid>`` records of ``outputs``, from one snapshot."""
    if not outputs:
        return []
    values = await storage.read([o.external_id.encode() for o in outputs])
    return [decode(v, OutputFile.from_json) for v in values]
