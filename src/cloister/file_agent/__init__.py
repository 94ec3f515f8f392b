"""Download and upload task files by URL scheme, streamed, within size and time limits (layer 3).

Imports only ``cloister.errors``, ``cloister.config`` and ``cloister.model``; the execution service drives it.
``http(s)`` URLs reach only global addresses and the networks an operator allows (``addresses``, ``network``).
"""

from cloister.file_agent.agent import FileAgent, TransferLimits
from cloister.file_agent.urls import display_url, url_basename

__all__ = ["FileAgent", "TransferLimits", "display_url", "url_basename"]
