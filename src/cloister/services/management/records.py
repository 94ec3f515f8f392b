"""Management's records in storage: compact JSON values (§3.2), typed loads and batched reads."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from cloister.errors import CloisterError, InvalidArgumentError
from cloister.model.ids import ExternalId
from cloister.storage.client import StorageClient
from cloister.storage.ops import Put, Versioned

T = TypeVar("T")

MAX_READ_KEYS = 1000
"""The storage service answers at most this many keys per read."""

STAGED_TASK_QUEUE = b"staged-task"
CANCEL_QUEUE = b"cancel_queue"


class Record(Protocol):
    def to_json(self) -> Any: ...


def encode(record: Record) -> bytes:
    """Compact JSON, UTF-8 as serde_json writes it."""
    return json.dumps(record.to_json(), separators=(",", ":"), ensure_ascii=False).encode()


def put(key: bytes, record: Record) -> Put:
    return Put(key, encode(record))


def decode(value: Versioned | bytes | None, from_json: Callable[[Any], T]) -> T | None:
    if value is None:
        return None
    raw = value.value if isinstance(value, Versioned) else value
    return from_json(json.loads(raw))


def parse_id(text: str, prefix: str, error: type[CloisterError]) -> ExternalId:
    """Parse an id of kind ``prefix``, answering the RPC's own error when it does not parse."""
    try:
        return ExternalId.parse(text, prefix)
    except InvalidArgumentError:
        raise error() from None


async def read_many(storage: StorageClient, keys: Sequence[bytes]) -> list[Versioned | None]:
    """Read any number of keys; each chunk comes from one snapshot."""
    if len(keys) <= MAX_READ_KEYS:
        return await storage.read(keys) if keys else []
    values: list[Versioned | None] = []
    for start in range(0, len(keys), MAX_READ_KEYS):
        values.extend(await storage.read(keys[start : start + MAX_READ_KEYS]))
    return values
