"""Logging set-up for service processes and the CLI (only ``launcher`` and ``cli`` call it).

Each service writes every record to its own log file, one JSON object per line with the
request context bound by the RPC interceptor, and warnings and errors to stderr, prefixed with
the service's name, so ``cloister up`` shows what needs attention and the files hold the rest.
A log file is rotated at ``[logging] max_bytes`` and ``backup_count`` old files are kept, so a
service's logs never take more than ``max_bytes * (backup_count + 1)``. On a full disk records
are dropped, counted and said once on stderr; the service goes on, and so does its log once
space returns.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.handlers
import os
import stat
import sys
import time
from pathlib import Path

from cloister.config import LoggingSettings
from cloister.errors import is_disk_full
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


class RotatingLogFile(logging.handlers.RotatingFileHandler):
    """A size-rotated log file that survives a full disk: records it cannot write are dropped
    and counted instead of printing a traceback per record, and writing resumes by itself."""

    def __init__(self, path: Path, max_bytes: int, backup_count: int) -> None:
        self._regular = True
        """Whether the file opened is a regular file (only those are rotated); set by each open."""
        super().__init__(path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self.dropped = 0
        """Records lost to the current full-disk episode (0 while writing works)."""

    def emit(self, record: logging.LogRecord) -> None:
        dropped = self.dropped
        super().emit(record)
        if dropped and self.dropped == dropped:  # written again: record what is missing
            self.dropped = 0
            message = "%d log records were dropped while the disk was full"
            note = logging.LogRecord(__name__, logging.WARNING, __file__, 0, message, (dropped,), None)
            super().emit(note)
            _say(f"log file {self.baseFilename}: writing again ({dropped} records dropped while the disk was full)")

    def format(self, record: logging.LogRecord) -> str:
        """The record's line, formatted once: the rotation check and the write both ask for it."""
        cached = record.__dict__.get("_cloister_line")
        if cached is not None and cached[0] is self:
            return str(cached[1])
        line = super().format(record)
        record.__dict__["_cloister_line"] = (self, line)
        return line

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - logging's name
        """Whether this record would take the file past ``maxBytes``: the standard check also stats
        the path twice per record, which a file this handler created needs not."""
        if self.stream is None:
            self.stream = self._open()
        if self.maxBytes <= 0 or not self._regular:
            return False  # a pipe or terminal (``--log-file /dev/stderr``) is never rotated
        return self.stream.tell() + len(self.format(record)) + 1 >= self.maxBytes

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        if exc is None or not is_disk_full(exc):
            super().handleError(record)
            return
        if not self.dropped:
            _say(f"log file {self.baseFilename}: the disk is full; dropping log records until space is freed")
        self.dropped += 1
        # What the stream still buffers cannot be trusted to land whole: drop it with the record.
        stream, self.stream = self.stream, None  # type: ignore[assignment]
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()

    def _open(self) -> io.TextIOWrapper:
        stream = super()._open()
        self._regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        # A line cut short (a full disk, a crash mid-write) must not swallow the next record.
        with contextlib.suppress(OSError):
            size = os.fstat(stream.fileno()).st_size
            if size:
                with open(self.baseFilename, "rb") as tail:
                    tail.seek(size - 1)
                    if tail.read(1) != b"\n":
                        stream.write("\n")
        return stream


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def configure(
    service: str, level: str = "INFO", log_file: Path | None = None, settings: LoggingSettings | None = None
) -> None:
    """Send records to stderr and, with ``log_file``, to that file rotated as ``settings`` say."""
    settings = settings or LoggingSettings()
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
        handler = RotatingLogFile(log_file, settings.max_bytes, settings.backup_count)
        handler.setFormatter(_JSONFormatter())
        handler.addFilter(context)
        root.addHandler(handler)
    # casbin logs every denied request, with its attributes, as a warning; the audit log records
    # each decision already, so only casbin's errors are worth a line here.
    logging.getLogger("casbin").setLevel(logging.ERROR)
