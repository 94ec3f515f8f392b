"""The write operations a storage commit is made of; a commit applies all of them or none."""

from __future__ import annotations

from dataclasses import dataclass


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


Op = Put | Delete | Enqueue | Ack | Dequeue | Check


@dataclass(frozen=True)
class Versioned:
    value: bytes
    version: int


@dataclass(frozen=True)
class QueueItem:
    seq: int
    value: bytes
