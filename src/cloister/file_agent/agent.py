"""The file agent: moves a task's files between their URLs and the execution service's disk (reference §11.2).

Deliberate difference from Teaclave: an upload succeeds on any 2xx answer (200, 201, 204), where Teaclave accepted
only 200 and so failed against servers that answer a PUT with 201 Created or 204 No Content. Every failure is a
:class:`~cloister.errors.TransferError` naming the URL as :func:`~cloister.file_agent.urls.display_url` shows it
(no query, fragment or password: presigned URLs carry credentials there), and is raised without a chained cause,
since httpx's exceptions quote whole URLs; a write refused for want of space is a
:class:`~cloister.errors.DiskFullError` instead, so the caller can tell a full disk from a bad URL. An
``http(s)`` URL reaches only global addresses and the networks the agent is given
(``[execution] allowed_networks``); see :mod:`cloister.file_agent.addresses`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import SplitResult

import httpx

from cloister.config import ExecutionSettings
from cloister.errors import DiskFullError, TransferError, is_disk_full
from cloister.file_agent import local, remote
from cloister.file_agent.addresses import AddressPolicy
from cloister.file_agent.urls import display_url, split_url

logger = logging.getLogger(__name__)
T = TypeVar("T")

_HTTP_SCHEMES = ("http", "https")
_HTTP_FAILURES = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


@dataclass(frozen=True)
class TransferLimits:
    """How large a file may be and how long a transfer may stall."""

    max_bytes: int
    timeout_seconds: float
    """Longest silence while connecting, reading, writing or waiting for a pooled connection."""

    def __post_init__(self) -> None:
        if self.max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if not self.timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")

    @classmethod
    def from_settings(cls, execution: ExecutionSettings) -> TransferLimits:
        return cls(max_bytes=execution.max_file_bytes, timeout_seconds=execution.transfer_timeout_seconds)


class FileAgent:
    """Downloads and uploads files by URL scheme: ``http``, ``https``, ``file``, ``fusion`` and (download) ``data``.

    The agent always builds its own HTTP client: one given from outside could connect anywhere.

    Args:
        fusion_base: the directory ``fusion:///TEACLAVE_FUSION_BASE/<path>`` URLs map into.
        limits: size and time limits applied to every transfer.
        file_roots: the only directories ``file:`` URLs may read from or write to; none disables them.
        allowed_networks: networks (CIDR) ``http(s)`` URLs may reach besides global addresses; none (the default)
            refuses loopback, private, link-local and every other internal address.
    """

    def __init__(
        self,
        fusion_base: Path,
        limits: TransferLimits,
        file_roots: Sequence[Path] = (),
        allowed_networks: Sequence[str] = (),
    ) -> None:
        self._fusion = local.FusionDirectory(fusion_base)
        self._file_roots = tuple(file_roots)
        self._limits = limits
        self._client = remote.new_client(limits.timeout_seconds, AddressPolicy.from_cidrs(allowed_networks))

    async def __aenter__(self) -> FileAgent:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the agent's HTTP client and its connections."""
        await self._client.aclose()

    async def download(self, url: str, destination: Path) -> int:
        """Fetch ``url`` into ``destination``, which must not exist (its parents are created).

        Returns the number of bytes written. On failure nothing is left at ``destination``.

        Raises:
            TransferError: the URL is unsupported or malformed, the source is missing or too large, the server
                refused or did not answer in time.
            DiskFullError: the disk of ``destination`` is full.
        """
        shown = display_url(url)
        with _failures(f"download of {shown} failed"):
            written = await self._download(url, destination)
        logger.debug("downloaded %d bytes from %s", written, shown)
        return written

    async def upload(self, source: Path, url: str) -> None:
        """Send the existing file ``source`` to ``url``; a ``file`` or ``fusion`` destination must not exist.

        Raises:
            TransferError: the URL is unsupported or malformed, the source is missing or too large, the
                destination exists, the server refused or did not answer in time.
            DiskFullError: the disk of a ``file`` or ``fusion`` destination is full.
        """
        shown = display_url(url)
        with _failures(f"upload to {shown} failed"):
            await self._upload(source, url)
        logger.debug("uploaded %s to %s", source.name, shown)

    async def download_all(self, items: Mapping[str, tuple[str, Path]]) -> None:
        """Download ``name -> (url, destination)`` concurrently; the first failure cancels the rest and is raised."""
        await _all({name: self.download(url, destination) for name, (url, destination) in items.items()})

    async def upload_all(self, items: Mapping[str, tuple[Path, str]]) -> None:
        """Upload ``name -> (source, url)`` concurrently; the first failure cancels the rest and is raised."""
        await _all({name: self.upload(source, url) for name, (source, url) in items.items()})

    async def _http(self, parts: SplitResult, transfer: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run an http(s) ``transfer`` under the agent's limits, its failures described without the URL's secrets."""
        remote.check_http_url(parts)
        limits = self._limits
        try:
            return await transfer(
                self._client, *args, max_bytes=limits.max_bytes, timeout_seconds=limits.timeout_seconds
            )
        except _HTTP_FAILURES as exc:
            raise TransferError(remote.describe_http_error(exc, parts, limits.timeout_seconds)) from None

    async def _download(self, url: str, destination: Path) -> int:
        parts = split_url(url)
        scheme = parts.scheme.lower()
        max_bytes = self._limits.max_bytes
        if scheme in _HTTP_SCHEMES:
            return await self._http(parts, remote.http_download, url, destination)
        if scheme == "file":
            source = local.confined(local.file_url_path(parts), self._file_roots)
            return await local.copy_file(source, destination, max_bytes)
        if scheme == "fusion":
            source = await self._fusion.source(parts)
            return await local.copy_file(source, destination, max_bytes, source_what="fusion file")
        if scheme == "data":
            return await local.write_data(local.decode_data_url(parts, max_bytes), destination)
        raise _SchemeError(scheme)

    async def _upload(self, source: Path, url: str) -> None:
        parts = split_url(url)
        scheme = parts.scheme.lower()
        if scheme in _HTTP_SCHEMES:
            await self._http(parts, remote.http_upload, source, url)
            return
        if scheme == "file":
            destination = local.confined(local.file_url_path(parts), self._file_roots)
        elif scheme == "fusion":
            destination = await self._fusion.destination(parts)
        else:
            raise _SchemeError(scheme)
        await local.copy_file(source, destination, self._limits.max_bytes)


class _SchemeError(TransferError):
    """Keeps the reference's ``Scheme not supported`` at the start of the message."""

    def __init__(self, scheme: str) -> None:
        super().__init__(f"Scheme not supported: {scheme}")


@contextlib.contextmanager
def _failures(context: str) -> Iterator[None]:
    """Every failure inside becomes one TransferError saying ``context``; the reference's
    ``Scheme not supported`` stays first."""
    try:
        yield
    except _SchemeError as exc:
        raise TransferError(f"{exc.message} ({context})") from None
    except TransferError as exc:
        raise TransferError(f"{context}: {exc.message}") from None
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"{context}: the disk it is written to is full") from None
        raise TransferError(f"{context}: {exc.strerror or type(exc).__name__}") from None


async def _all(jobs: Mapping[str, Awaitable[object]]) -> None:
    """Run ``jobs`` concurrently; on the first failure cancel the others, wait for them, and raise it."""
    tasks = {asyncio.ensure_future(job): name for name, job in jobs.items()}
    failed: asyncio.Future[object] | None = None
    try:
        pending = set(tasks)
        while pending and failed is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failures = [task for task in done if not task.cancelled() and task.exception() is not None]
            if failures:
                failed = min(failures, key=lambda task: tasks[task])
    finally:
        # Also reached when the caller is cancelled: no transfer may outlive this call.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if failed is not None:
        exc = failed.exception()
        if isinstance(exc, TransferError):
            raise TransferError(f"{tasks[failed]}: {exc.message}") from None
        assert exc is not None
        raise exc
