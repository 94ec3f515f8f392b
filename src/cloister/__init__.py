"""Cloister: confidential multi-party function-as-a-service, wire-compatible with Apache Teaclave.

The client's names are importable from here (``from cloister import Client``) but loaded only
when first used, so ``import cloister`` stays light: a service process imports no SDK, and a
client imports grpc only when it connects. The names resolve to :mod:`cloister.sdk`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Client": "cloister.sdk",
    "Credentials": "cloister.sdk",
    "Trust": "cloister.sdk",
    "Crypto": "cloister.sdk",
    "Channel": "cloister.sdk",
    "FileHandle": "cloister.sdk",
    "FunctionHandle": "cloister.sdk",
    "TaskHandle": "cloister.sdk",
    "File": "cloister.model",
    "Function": "cloister.model",
    "Task": "cloister.model",
    "TaskResult": "cloister.model",
    "TaskStatus": "cloister.model",
    "TimelineEntry": "cloister.model",
    "CloisterError": "cloister.errors",
    "AccessDeniedError": "cloister.errors",
    "AuthenticationError": "cloister.errors",
    "ExecutorLostError": "cloister.errors",
    "TaskCancelledError": "cloister.errors",
    "TaskError": "cloister.errors",
    "TaskFailedError": "cloister.errors",
    "TaskNotReadyError": "cloister.errors",
    "UserExistsError": "cloister.errors",
}
"""Public name → the module it is loaded from on first use. No import statement names them
here: this package is layer 0 (tests/unit/test_layers.py)."""

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloister' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
