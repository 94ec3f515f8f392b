"""Logging set-up for service processes and the CLI (only ``launcher`` and ``cli`` call it).

Each service writes every record to its own log file, one JSON object per line with the
request context bound by the RPC interceptor, and warnings and errors to stderr, prefixed with
the service's name, so ``cloister up`` shows what needs attention and the files hold the rest.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from cloister.rpc.server import request_context


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (request_context.get() or {}).items():
            setattr(record, key, value)
        return True


class _JSONFormatter(logging.Formatter):
    _FIELDS = ("service", "method", "request_id", "user_id")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.created * 1_000_000) % 1_000_000:06d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self._FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(service: str, level: str = "INFO", log_file: Path | None = None) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level.upper())
    context = _ContextFilter()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if log_file else level.upper())
    console.setFormatter(logging.Formatter(f"%(asctime)s {service:>14} %(levelname)s %(message)s", "%H:%M:%S"))
    console.addFilter(context)
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(_JSONFormatter())
        handler.addFilter(context)
        root.addHandler(handler)
    # casbin logs every denied request, with its attributes, as a warning; the audit log records
    # each decision already, so only casbin's errors are worth a line here.
    logging.getLogger("casbin").setLevel(logging.ERROR)
