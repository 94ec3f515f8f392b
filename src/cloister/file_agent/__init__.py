"""Download and upload task files by URL scheme, streamed, within size and time limits (layer 3).

Imports only ``cloister.errors``, ``cloister.config`` and ``cloister.model``; the execution service drives it, and
management checks a file's URL with :func:`check_url` when it is registered.
``http(s)`` URLs reach only global addresses and the networks an operator allows (``addresses``, ``network``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloister.file_agent.schemes import READ_SCHEMES, WRITE_SCHEMES, check_url
from cloister.file_agent.urls import display_url, url_basename

if TYPE_CHECKING:
    from cloister.file_agent.agent import FileAgent, TransferLimits

__all__ = ["READ_SCHEMES", "WRITE_SCHEMES", "FileAgent", "TransferLimits", "check_url", "display_url", "url_basename"]


def __getattr__(name: str) -> Any:
    """The transfer half on first use: it imports httpx, a tenth of a CPU second that
    management and the other services checking URLs would pay at every start for nothing."""
    if name in ("FileAgent", "TransferLimits"):
        from cloister.file_agent import agent

        return getattr(agent, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
