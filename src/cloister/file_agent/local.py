"""Transfers that stay on the machine: ``file://``, ``fusion:///TEACLAVE_FUSION_BASE/...`` and ``data:`` URLs (§11.2).

``file://`` reaches any path the execution service may open, as in Teaclave. A fusion URL is hostile input until
proven otherwise: its relative path may not contain empty, ``.`` or ``..`` segments (encoded or not), and what it
resolves to, symlinks followed, must stay inside the fusion directory.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import SplitResult, unquote_to_bytes

from cloister.errors import TransferError
from cloister.file_agent.local_io import open_new_file, open_reader, run_blocking
from cloister.file_agent.urls import normalized_path

FUSION_PREFIX = "/TEACLAVE_FUSION_BASE/"
DATA_MEDIA_TYPE = "text/plain;base64"


def too_large(max_bytes: int, size: int | None = None) -> TransferError:
    """The error for a file over the size limit, saying the limit."""
    has = f"has {size} bytes, " if size is not None else "is "
    return TransferError(f"the file {has}more than the limit of {max_bytes} bytes")


def file_url_path(parts: SplitResult) -> Path:
    """The local path of a ``file:`` URL, percent-decoded and with dot segments resolved, as rust-url does."""
    if parts.netloc not in ("", "localhost"):
        raise TransferError("a file URL must not name a host")
    raw = unquote_to_bytes(normalized_path(parts))
    if b"\x00" in raw:
        raise TransferError("a file URL must not contain NUL")
    return Path(os.fsdecode(raw))


def confined(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` if it lies, symlinks resolved, inside one of ``roots``.

    A task's URLs are chosen by its participants, so a ``file:`` URL could otherwise name any
    file the execution service can read, its keys included.
    """
    if not roots:
        raise TransferError("file URLs are disabled on this execution service (see [execution] file_roots)")
    resolved = Path(os.path.realpath(path))
    for root in roots:
        base = Path(os.path.realpath(root))
        if resolved == base or base in resolved.parents:
            return resolved
    raise TransferError("the file URL points outside the directories this execution service may use")


def fusion_segments(parts: SplitResult) -> list[str]:
    """The relative path a fusion URL names, as segments; checked again at every transfer."""
    if parts.netloc or not parts.path.startswith(FUSION_PREFIX):
        raise TransferError(f"a fusion URL must look like fusion://{FUSION_PREFIX}<relative path>")
    segments = []
    for raw in parts.path[len(FUSION_PREFIX) :].split("/"):
        name = os.fsdecode(unquote_to_bytes(raw))
        if name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
            raise TransferError("the fusion path must be a plain relative path inside the fusion directory")
        segments.append(name)
    return segments


def _outside() -> TransferError:
    return TransferError("the fusion path leads outside the fusion directory")


class FusionDirectory:
    """Maps fusion URLs to files under ``base`` and refuses any that would leave it."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def _source(self, parts: SplitResult) -> Path:
        segments = fusion_segments(parts)
        base = self.base.resolve()
        try:
            real = base.joinpath(*segments).resolve(strict=True)
        except FileNotFoundError:
            raise TransferError(f"fusion file does not exist: {'/'.join(segments)}") from None
        except OSError as exc:  # a symlink loop, a component that is not a directory
            raise TransferError(f"cannot open fusion file: {exc.strerror or type(exc).__name__}") from None
        if not real.is_relative_to(base):
            raise _outside()
        return real

    def _destination(self, parts: SplitResult) -> Path:
        segments = fusion_segments(parts)
        self.base.mkdir(parents=True, exist_ok=True)
        base = self.base.resolve()
        parent = base.joinpath(*segments[:-1])
        # Check the deepest directory that exists before creating any below it, so that a symlinked directory
        # cannot make mkdir create directories elsewhere; then check again what was created.
        probe = parent
        while probe != base and not probe.exists():
            probe = probe.parent
        if not probe.resolve().is_relative_to(base):
            raise _outside()
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransferError(f"cannot create fusion directory: {exc.strerror or type(exc).__name__}") from None
        real_parent = parent.resolve()
        if not real_parent.is_relative_to(base):
            raise _outside()
        # The final component is created with O_EXCL, which refuses an existing symlink as well.
        return real_parent / segments[-1]

    async def source(self, parts: SplitResult) -> Path:
        """The existing file a fusion URL names."""
        return await run_blocking(self._source, parts)

    async def destination(self, parts: SplitResult) -> Path:
        """Where to create the file a fusion URL names; its parent directories are created."""
        return await run_blocking(self._destination, parts)


async def copy_file(source: Path, destination: Path, max_bytes: int, *, source_what: str = "source file") -> int:
    """Stream-copy ``source`` to a new file ``destination`` (removed again on failure); returns the bytes copied."""
    async with open_reader(source, what=source_what) as reader:
        if reader.size > max_bytes:
            raise too_large(max_bytes, reader.size)
        async with open_new_file(destination, what="destination") as writer:
            async for chunk in reader.chunks():
                await writer.write(chunk)
            return writer.written


def decode_data_url(parts: SplitResult, max_bytes: int) -> bytes:
    """The bytes of a ``data:text/plain;base64,<b64>`` URL; no other data URL is accepted (as in Teaclave)."""
    pieces = normalized_path(parts).split(",")
    if len(pieces) != 2 or pieces[0] != DATA_MEDIA_TYPE:
        raise TransferError(f"malformed data URL: only data:{DATA_MEDIA_TYPE},<base64> is supported")
    payload = pieces[1]
    if len(payload) // 4 * 3 - 2 > max_bytes:
        raise too_large(max_bytes)
    payload += "=" * (-len(payload) % 4)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TransferError("malformed data URL: the data is not valid base64") from None
    if len(data) > max_bytes:
        raise too_large(max_bytes, len(data))
    return data


async def write_data(data: bytes, destination: Path) -> int:
    """Write decoded ``data:`` bytes to a new file ``destination``."""
    async with open_new_file(destination) as writer:
        for start in range(0, len(data), 1024 * 1024):
            await writer.write(data[start : start + 1024 * 1024])
        return writer.written
