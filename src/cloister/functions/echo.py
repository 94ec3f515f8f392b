"""``builtin-echo`` (reference §12.1): returns its ``message`` argument unchanged."""

from __future__ import annotations

from typing import Any

from cloister.functions import FileRuntime, FunctionError, function_logger

NAME = "builtin-echo"

logger = function_logger("teaclave_function::echo")


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    """Echo ``message``; it is also logged, so a task with ``save_log`` sees it in its log."""
    message = arguments.get("message")
    if not isinstance(message, str):
        raise FunctionError("Cannot deserialize arguments")
    logger.info("%s", message)
    return message
