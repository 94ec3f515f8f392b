"""The scheduler protocol's fields ↔ model types: executor descriptions and task ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from cloister._proto import cloister_pb2 as cpb
from cloister.errors import MalformedRequestError
from cloister.model.executors import ExecutorInfo


def parse_uuid(text: str, what: str) -> uuid.UUID:
    """A bare UUID from a request; INTERNAL like the reference's parse failures."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise MalformedRequestError(f"invalid {what}: {text[:64]!r} is not a UUID") from None


def task_ids_from_proto(texts: Iterable[str]) -> list[uuid.UUID]:
    """The task ids that parse; others name no task and are skipped."""
    ids = []
    for text in texts:
        try:
            ids.append(uuid.UUID(text))
        except ValueError:
            continue
    return ids


def executor_info_to_proto(info: ExecutorInfo) -> cpb.ExecutorInfo:
    return cpb.ExecutorInfo(
        executor_id=info.executor_id, executors=sorted(info.executors), labels=list(info.labels), slots=info.slots
    )


def executor_info_from_proto(message: cpb.ExecutorInfo) -> ExecutorInfo:
    return ExecutorInfo(
        executor_id=str(parse_uuid(message.executor_id, "executor id")),
        executors=frozenset(message.executors),
        labels=tuple(message.labels),
        slots=message.slots,
    )
