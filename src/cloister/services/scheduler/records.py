"""The scheduler's storage records: assignment records, task and output records.

Task and output records use the JSON of reference §3.2 (``cloister.model``); assignment records
are Cloister's own: ``scheduler-assignment-<task uuid>`` = ``{"executor_id","task_id"}``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Protocol

from cloister.model.files import OutputFile
from cloister.model.tasks import REASON_CANCELED_BY_USER, TaskResult, TaskState, TaskStatus
from cloister.storage.ops import Op, Put, QueueItem, Versioned
from cloister.storage.records import decode, encode_json, put

ASSIGNMENT_PREFIX = b"scheduler-assignment"

logger = logging.getLogger(__name__)


class Storage(Protocol):
    """The part of :class:`~cloister.storage.client.StorageClient` the scheduler uses."""

    async def get(self, key: bytes) -> bytes | None: ...

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]: ...

    async def commit(self, ops: Sequence[Op]) -> None: ...

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


def put_canceled(task: TaskState) -> Put:
    """The task ended as Canceled by a participant's CancelTask (reference §8.8)."""
    return put_task(task.with_status(TaskStatus.CANCELED, TaskResult.err(REASON_CANCELED_BY_USER)))


def put_output(output: OutputFile) -> Put:
    return put(output.external_id.encode(), output)


async def load_task(storage: Storage, task_id: uuid.UUID) -> TaskState | None:
    """The stored task, or None when there is none or it cannot be read (logged)."""
    raw = await storage.get(task_key(task_id))
    try:
        return decode(raw, TaskState.from_json)
    except (KeyError, TypeError, ValueError) as exc:
        logger.error("task record %s is unreadable (%s: %s); treating it as absent", task_id, type(exc).__name__, exc)
        return None


async def load_outputs(storage: Storage, outputs: Sequence[OutputFile]) -> list[OutputFile | None]:
    """The standalone ``output-<uuid>`` records of ``outputs``, from one snapshot."""
    if not outputs:
        return []
    values = await storage.read([o.external_id.encode() for o in outputs])
    return [decode(v, OutputFile.from_json) for v in values]
