"""The argument list python and wasm functions receive (reference §11.5)."""

from __future__ import annotations

import json
from typing import Any


def flat_arguments(arguments: dict[str, Any]) -> list[str]:
    """The argv Teaclave gives python and wasm functions (§11.5): ``key, value`` pairs by sorted key.

    Strings go verbatim; any other JSON value as compact JSON the way serde_json prints it (object
    keys sorted, non-ASCII kept), e.g. ``10``, ``true``, ``{"a":1}``.
    """
    flat: list[str] = []
    for key in sorted(arguments):
        value = arguments[key]
        flat.append(key)
        if isinstance(value, str):
            flat.append(value)
        else:
            flat.append(json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False))
    return flat
