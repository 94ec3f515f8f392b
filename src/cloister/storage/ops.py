"""The write operations a storage commit is made of; a commit applies all of them or none."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloister.errors import InvalidArgumentError


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Delete:
    key: bytes


@dataclass(frozen=True)
class Enqueue:
    queue: bytes
    value: bytes


@dataclass(frozen=True)
class Ack:
    """Remove one element, by sequence number, from a queue."""

    queue: bytes
    seq: int


@dataclass(frozen=True)
class Dequeue:
    """Pop the oldest element of a queue (Teaclave's Dequeue); fails when it is empty."""

    queue: bytes


@dataclass(frozen=True)
class Check:
    """Apply the commit only if ``key`` is still at ``version`` (0: absent), else ConflictError.

    A read-check-write: read the record with its version, decide, commit with this check, so a
    decision made on a record that changed meanwhile is never written over the newer one.
    """

    key: bytes
    version: int

    @classmethod
    def of(cls, key: bytes, read: Versioned | None) -> Check:
        """The check that ``key`` is still as it was ``read`` (absent when ``read`` is None)."""
        return cls(key, 0 if read is None else read.version)


@dataclass(frozen=True)
class CheckValue:
    """Apply the commit only if ``key`` still holds the value whose SHA-256 is ``sha256``, else ConflictError.

    For a writer that has the record from elsewhere than a read (a queue element written in the
    same commit as the record), and so no version: the check holds exactly when a decision made on
    that copy is a decision on what is stored.
    """

    key: bytes
    sha256: bytes


@dataclass(frozen=True)
class Claim:
    """Lease the oldest element of a queue that no live lease holds, for ``lease_seconds``.

    The commit's result for it is a :class:`Lease`; NotFoundError when the queue has no such
    element. The element stays in the queue (``queue_items`` still lists it) until it is acked;
    a lease that is not extended in time runs out, and the next Claim takes the element again,
    so a worker that dies with it does not lose it.
    """

    queue: bytes
    lease_seconds: float


@dataclass(frozen=True)
class Extend:
    """Push a held lease's end to ``lease_seconds`` from now (a heartbeat); ConflictError when it was lost."""

    queue: bytes
    seq: int
    lease_id: bytes
    lease_seconds: float


Op = Put | Delete | Enqueue | Ack | Dequeue | Check | CheckValue | Claim | Extend

MAX_LEASE_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Lease:
    """A claimed queue element and the id that extends its lease."""

    seq: int
    value: bytes
    lease_id: bytes


def check_lease_seconds(seconds: float) -> float:
    """``seconds`` if it is a usable lease length; InvalidArgumentError otherwise."""
    if not 0 < seconds <= MAX_LEASE_SECONDS:  # also refuses NaN
        raise InvalidArgumentError(f"a lease lasts more than 0 and at most {MAX_LEASE_SECONDS:.0f} seconds")
    return seconds


OpResult = bytes | Lease | int | None
"""What one op of a commit gives back: a Dequeue's value, a Claim's lease, a Put's new version, else None."""


Written = Mapping[bytes, int]
"""The version a commit gave each key it put (the last put of a key, when it is put twice).

Empty when the storage service does not say (one older than this client): the writer then
reads what it needs, as it would have without.
"""


def written(ops: Sequence[Op], results: Sequence[int | object]) -> dict[bytes, int]:
    """:data:`Written` from a commit's ops and its results (one per op); empty unless they pair up."""
    if len(results) != len(ops):
        return {}
    return {
        op.key: result
        for op, result in zip(ops, results, strict=True)
        if isinstance(op, Put) and isinstance(result, int) and result > 0
    }


@dataclass(frozen=True)
class Versioned:
    value: bytes
    version: int


@dataclass(frozen=True)
class QueueItem:
    seq: int
    value: bytes
