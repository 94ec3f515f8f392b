"""Per-task logs (reference §11.7): what a function logs goes to its task, not to the service log.

A function's log records belong to the task's participants: they may quote its arguments, so
they must not reach the operator's log files. Function loggers therefore do not propagate;
their one handler appends each record to the log of the task running in the current context
(a context variable, which ``asyncio.to_thread`` carries into the worker thread), and drops it
outside a task. Records of other loggers are not captured.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator

MAX_LOG_LINES = 1000
"""At most this many lines per task log, the truncation notice included."""
MAX_LOG_BYTES = 64 * 1024
"""At most this many UTF-8 bytes per task log, the truncation notice included."""

_NOTICE = f"[WARN cloister] task log truncated: it is limited to {MAX_LOG_LINES} lines and {MAX_LOG_BYTES // 1024} KiB"
_NOTICE_BYTES = len(_NOTICE.encode())
_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "ERROR"}  # Rust's log level names, as Teaclave prints them
_current: contextvars.ContextVar[TaskLog | None] = contextvars.ContextVar("cloister_task_log", default=None)


class TaskLog:
    """The lines captured for one task, capped at :data:`MAX_LOG_LINES` and :data:`MAX_LOG_BYTES`."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._bytes = 0
        self._lock = threading.Lock()
        self.truncated = False

    def append(self, line: str) -> None:
        size = len(line.encode("utf-8", "replace"))
        with self._lock:
            if self.truncated:
                return
            if len(self._lines) + 1 >= MAX_LOG_LINES or self._bytes + size + _NOTICE_BYTES > MAX_LOG_BYTES:
                self.truncated = True
                return
            self._lines.append(line)
            self._bytes += size

    @property
    def lines(self) -> tuple[str, ...]:
        with self._lock:
            return (*self._lines, _NOTICE) if self.truncated else tuple(self._lines)


class _TaskLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is None:
            return
        try:
            message = record.getMessage()
        except Exception:  # a function's bad format string must not fail the function
            message = str(record.msg)
        level = _LEVEL_NAMES.get(record.levelname, record.levelname)
        log.append(f"[{level} {record.name}] {message}")


_HANDLER = _TaskLogHandler()


def function_logger(name: str) -> logging.Logger:
    """The logger a function logs to: INFO and above reach its task's log, nothing else.

    INFO is the most detailed level Teaclave's release builds capture, so DEBUG records are
    dropped here too.
    """
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    return logger


@contextlib.contextmanager
def capture_task_log() -> Iterator[TaskLog]:
    """Capture function log records emitted in this context (and threads started from it)."""
    log = TaskLog()
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)
