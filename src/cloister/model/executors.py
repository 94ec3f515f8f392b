"""Executor kinds, how the protocol spells them, and what an execution service tells the
scheduler about itself.

:class:`ExecutorKind` is the one list of executors: the protocol's spellings of function
executor types and task executors (reference §3.2, §6.1), the pairs that may run together,
the kinds an execution service offers and the runtimes in the sandbox all derive from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ExecutorKind(enum.StrEnum):
    """An executor: what runs a function. Its value is Cloister's name, accepted wherever the
    reference's spellings are."""

    BUILTIN = "builtin"
    PYTHON = "python"
    WASM = "wasm"


@dataclass(frozen=True)
class Spelling:
    """How the reference spells a kind: in requests and in persisted records (serde names)."""

    function_type: str
    function_type_name: str
    executor: str
    executor_name: str


SPELLINGS: dict[ExecutorKind, Spelling] = {
    ExecutorKind.BUILTIN: Spelling("builtin", "Builtin", "builtin", "Builtin"),
    ExecutorKind.PYTHON: Spelling("python", "Python", "mesapy", "MesaPy"),
    ExecutorKind.WASM: Spelling("wamr", "WAMicroRuntime", "wamr", "WAMicroRuntime"),
}

PAIRS: dict[tuple[str, str], ExecutorKind] = {(s.function_type, s.executor): kind for kind, s in SPELLINGS.items()}
"""(function executor type, task executor) → the executor kind that runs it (reference §6.1)."""


def kind_of(executor_type: str, executor: str) -> ExecutorKind | None:
    """The kind that runs a function of ``executor_type`` as a task of ``executor``; None when
    the two are no pair."""
    return PAIRS.get((executor_type, executor))


def parse_kinds(names: tuple[str, ...] | list[str]) -> tuple[list[ExecutorKind], list[str]]:
    """The known kinds among ``names`` (configuration), and the unknown names."""
    known = [ExecutorKind(n) for n in names if n in ExecutorKind.__members__.values()]
    return known, [n for n in names if n not in ExecutorKind.__members__.values()]


@dataclass(frozen=True)
class ExecutorInfo:
    executor_id: str
    executors: frozenset[str]
    """The executor kinds it runs (``builtin``, ``python``, ``wasm``)."""
    labels: tuple[str, ...] = ()
    """Operator-set capabilities (``gpu``) that functions may require."""
    slots: int = 1
    """How many tasks it runs at once."""
