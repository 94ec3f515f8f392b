"""Records as stored: compact JSON as serde_json writes it (reference §3.2), and the queues that
carry tasks from management to the scheduler.

Both services write the same task records and use the same queues, but may not import each
other, so the encoding and the queue names live here, once.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from cloister.errors import CloisterError
from cloister.model.ids import ExternalId
from cloister.storage.ops import Op, Put, Versioned, Written

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


_ABSENT = Versioned(b"", 0)


class KeptRecords:
    """Records as this service last wrote (or read) them, each with its storage version.

    A decision followed by a commit that checks those versions may be made on them without
    reading them back: if anything else wrote one since, storage refuses the commit, and the
    caller forgets what it kept and decides again on what it reads. At most ``capacity`` are
    kept, the least recently used dropped first.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._records: OrderedDict[bytes, Versioned] = OrderedDict()

    def known(self, keys: Sequence[bytes]) -> list[Versioned | None] | None:
        """The records of ``keys`` (None for a key known to be absent) if all are kept, else None."""
        found = [self._records.get(key) for key in keys]
        if any(record is None for record in found):
            return None
        for key in keys:
            self._records.move_to_end(key)
        return [None if record is _ABSENT else record for record in found]

    def keep(self, key: bytes, record: Versioned | None) -> None:
        """Keep ``record`` as just read or written; None: the key is absent."""
        self._records[key] = _ABSENT if record is None else record
        self._records.move_to_end(key)
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)

    def keep_written(self, ops: Sequence[Op], written: Written, keys: frozenset[bytes] | None = None) -> None:
        """Keep what a commit of ``ops`` put (only ``keys``, if given), at the versions it was given."""
        for op in ops:
            if isinstance(op, Put) and (keys is None or op.key in keys):
                version = written.get(op.key)
                if version is None:
                    self.forget(op.key)
                else:
                    self.keep(op.key, Versioned(op.value, version))

    def forget(self, *keys: bytes) -> None:
        for key in keys:
            self._records.pop(key, None)


async def load(storage: Reader, record_id: ExternalId, from_json: Callable[[Any], T], error: type[CloisterError]) -> T:
    """The record stored under ``record_id``; ``error`` (the RPC's "invalid … id") when there is none."""
    record = decode(await storage.get(record_id.key), from_json)
    if record is None:
        raise error()
    return record
