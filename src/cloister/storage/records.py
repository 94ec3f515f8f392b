"""Records as stored: compact JSON as serde_json writes it (reference §3.2), and the queues that
carry tasks from management to the scheduler.

Both services write the same task records and use the same queues, but may not import each
other, so the encoding and the queue names live here, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from cloister.errors import CloisterError
from cloister.model.ids import ExternalId
from cloister.storage.ops import Put, Versioned

T = TypeVar("T")

STAGED_TASK_QUEUE = b"staged-task"
CANCEL_QUEUE = b"cancel_queue"


class Record(Protocol):
    def to_json(self) -> Any: ...


class Reader(Protocol):
    async def get(self, key: bytes) -> bytes | None: ...


def encode_json(value: Any) -> bytes:
    """Compact JSON, UTF-8 as serde_json writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode(record: Record) -> bytes:
    return encode_json(record.to_json())


def put(key: bytes, record: Record) -> Put:
    return Put(key, encode(record))


def decode(value: Versioned | bytes | None, from_json: Callable[[Any], T]) -> T | None:
    if value is None:
        return None
    raw = value.value if isinstance(value, Versioned) else value
    return from_json(json.loads(raw))


async def load(storage: Reader, record_id: ExternalId, from_json: Callable[[Any], T], error: type[CloisterError]) -> T:
    """The record stored under ``record_id``; ``error`` (the RPC's "invalid … id") when there is none."""
    record = decode(await storage.get(record_id.key), from_json)
    if record is None:
        raise error()
    return record
