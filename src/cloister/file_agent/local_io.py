"""Local files read and written in 1 MiB chunks on worker threads, so the event loop never blocks on a disk.

A cancelled chunk operation waits for its thread before the file is closed: closing a descriptor a thread is still
using could let the write land in whatever file reuses the number.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from cloister.errors import TransferError

CHUNK_BYTES = 1024 * 1024
"""How much of a file is held in memory at once."""

_T = TypeVar("_T")


async def run_blocking(function: Callable[..., _T], *args: object, undo: Callable[[_T], object] | None = None) -> _T:
    """Run ``function`` on a worker thread; if cancelled, let the thread finish before re-raising.

    ``undo`` receives what the thread produced when nobody is left to use it (an opened file, say).
    """
    future = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if undo is not None and not future.cancelled() and future.exception() is None:
            undo(future.result())
        raise


class ChunkReader:
    """An open regular file, its size taken from the open descriptor."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.size = os.fstat(file.fileno()).st_size

    async def read(self, size: int = CHUNK_BYTES) -> bytes:
        return await run_blocking(self._file.read, size)

    async def chunks(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """Yield the file's bytes in chunks, stopping after ``limit`` bytes if given."""
        remaining = self.size if limit is None else limit
        while remaining > 0:
            chunk = await self.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


class ChunkWriter:
    """A newly created file; counts what is written."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.written = 0

    async def write(self, chunk: bytes) -> None:
        await run_blocking(self._file.write, chunk)
        self.written += len(chunk)


def _open_existing(path: Path) -> BinaryIO:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it has no effect on regular files.
    file = open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK))  # noqa: SIM115
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise TransferError(f"not a regular file: {path}")
    return file


@contextlib.asynccontextmanager
async def open_reader(path: Path, *, what: str = "source file") -> AsyncIterator[ChunkReader]:
    """Open an existing regular file for chunked reading."""
    try:
        file = await run_blocking(_open_existing, path, undo=lambda opened: opened.close())
    except FileNotFoundError:
        raise TransferError(f"{what} does not exist: {path}") from None
    except IsADirectoryError:
        raise TransferError(f"{what} is a directory: {path}") from None
    except OSError as exc:
        raise TransferError(f"cannot open {what} {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        yield ChunkReader(file)
    finally:
        file.close()


def _create(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "xb")  # closed by open_new_file


def _discard(file: BinaryIO, path: Path) -> None:
    with contextlib.suppress(OSError):
        file.close()
    with contextlib.suppress(OSError):
        path.unlink()


@contextlib.asynccontextmanager
async def open_new_file(path: Path, *, what: str = "destination") -> AsyncIterator[ChunkWriter]:
    """Create ``path`` (which must not exist) and its parents; remove it again if the block fails or is cancelled."""
    try:
        file = await run_blocking(_create, path, undo=lambda created: _discard(created, path))
    except FileExistsError:
        raise TransferError(f"{what} already exists: {path}") from None
    except OSError as exc:
        raise TransferError(f"cannot create {what} {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        yield ChunkWriter(file)
        await run_blocking(file.close)
    except BaseException:
        _discard(file, path)
        raise
