"""Reading a built-in's arguments the way Teaclave's serde structs do: typed, strict, one error text.

A missing or ill-typed argument fails the task with ``Cannot deserialize arguments`` (§11.4);
unknown extra keys (``save_log`` among them) are ignored.
"""

from __future__ import annotations

from typing import Any

from cloister.functions import FunctionError

DESERIALIZE = "Cannot deserialize arguments"
_U32 = 2**32


def string(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str):
        raise FunctionError(DESERIALIZE)
    return value


def unsigned(arguments: dict[str, Any], key: str, limit: int = 2**64) -> int:
    """A JSON integer in [0, limit): Rust's unsigned types refuse floats, negatives and strings."""
    value = arguments.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise FunctionError(DESERIALIZE)
    return value


def u32(arguments: dict[str, Any], key: str) -> int:
    return unsigned(arguments, key, _U32)


def boolean(arguments: dict[str, Any], key: str) -> bool:
    value = arguments.get(key)
    if not isinstance(value, bool):
        raise FunctionError(DESERIALIZE)
    return value


def number(arguments: dict[str, Any], key: str) -> float:
    value = arguments.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FunctionError(DESERIALIZE)
    return float(value)
