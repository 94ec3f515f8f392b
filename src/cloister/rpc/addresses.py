"""Where running services are: configured addresses, or the ports they published at start.

A service configured with port 0 binds a free port and writes it to ``<state>/run/<endpoint>``
so its peers, the launcher and ``cloister status`` find it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloister.config import Settings
from cloister.errors import UnavailableError


def _write_run_file(settings: Settings, name: str, text: str) -> None:
    """Replace ``<run_dir>/name`` atomically: a reader sees the old text or the new, never half."""
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, run_dir / name)


def publish(settings: Settings, endpoint: str, port: int) -> None:
    _write_run_file(settings, endpoint, f"{_connect_host(settings.endpoint(endpoint).host)}:{port}\n")


def publish_url(settings: Settings, name: str, url: str) -> None:
    """Where a process browsers reach (the console) serves, for the banner and ``cloister status``."""
    _write_run_file(settings, name, f"{url}\n")


def unpublish(settings: Settings, endpoint: str) -> None:
    (settings.run_dir / endpoint).unlink(missing_ok=True)


def published(settings: Settings, endpoint: str) -> str | None:
    try:
        return (settings.run_dir / endpoint).read_text().strip() or None
    except FileNotFoundError:
        return None


def mark_ready(settings: Settings, service: str) -> None:
    """Tell the launcher and ``cloister status`` that ``service`` is up (with its pid)."""
    _write_run_file(settings, f"{service}.ready", f"{os.getpid()}\n")


def publish_note(settings: Settings, service: str, topic: str, text: str) -> None:
    """Leave a one-line note about ``service`` for ``cloister status`` (e.g. how it isolates tasks)."""
    _write_run_file(settings, f"{service}.{topic}", text.replace("\n", " ") + "\n")


def note(settings: Settings, service: str, topic: str) -> str | None:
    try:
        return (settings.run_dir / f"{service}.{topic}").read_text().strip()
    except FileNotFoundError:
        return None


def unmark_ready(settings: Settings, service: str) -> None:
    (settings.run_dir / f"{service}.ready").unlink(missing_ok=True)


def ready_pid(settings: Settings, service: str) -> int | None:
    try:
        return int((settings.run_dir / f"{service}.ready").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def resolve(settings: Settings, endpoint: str) -> str:
    """The address to connect to ``endpoint``.

    Raises:
        UnavailableError: it uses a dynamic port and is not running.
    """
    configured = settings.endpoint(endpoint)
    if configured.port:
        return f"{_connect_host(configured.host)}:{configured.port}"
    address = published(settings, endpoint)
    if address is None:
        raise UnavailableError(f"{endpoint} is not running (no address in {Path(settings.run_dir)})")
    return address


def setting_of(endpoint: str) -> str:
    """The setting that places ``endpoint``, as a user would change it, for messages about it."""
    return f"[endpoints] {endpoint} (CLOISTER_ENDPOINTS__{endpoint.upper()})"


def _connect_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard listener is reached on loopback
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return host
