"""What an execution service tells the scheduler about itself, with every PullTaskWait and heartbeat."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecutorInfo:
    executor_id: str
    executors: frozenset[str]
    """The executor kinds it runs (``builtin``, ``python``, ``wasm``)."""
    labels: tuple[str, ...] = ()
    """Operator-set capabilities (``gpu``) that functions may require."""
    slots: int = 1
    """How many tasks it runs at once."""
