"""A service's local, append-only spool of audit entries: durable before the call they record is answered.

Entries are framed and checksummed in segment files (``<first seq>.spool``, 0600, in a 0700
directory). Concurrent appends share one write and one fsync (group commit). Management's
acknowledgement of entries up to a sequence number lets whole segments be deleted; a fully
acknowledged segment is replaced by an empty one named after the next sequence number, so the
numbering never goes back, even across restarts. After a kill a torn last frame fails its
checksum and is cut off: it was never acknowledged to anyone.

Frame: ``>IQI`` (payload length, sequence number, CRC-32 of sequence number and payload), then
the payload. A CRC detects torn and partial writes; tampering is the hash chain's business,
once the entries reach management.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from cloister.errors import DiskFullError, InternalError, is_disk_full

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">IQI")
_MAX_PAYLOAD = 1 << 20
_SUFFIX = ".spool"
SEGMENT_BYTES = 4 * 1024 * 1024
"""A segment is closed for appends once it is this large, so acknowledged entries can be deleted."""
RESERVED_BYTES = 512 * 1024
"""Disk space each new segment claims up front (a few thousand entries): when the disk fills,
calls are still recorded, so reads and refusals keep working while writes fail."""


def frame(seq: int, payload: bytes) -> bytes:
    """One record as stored: header, then ``payload``."""
    seq_bytes = seq.to_bytes(8, "big")
    return _HEADER.pack(len(payload), seq, zlib.crc32(seq_bytes + payload)) + payload


def parse_frames(data: bytes, offset: int = 0) -> tuple[list[tuple[int, bytes, int]], int]:
    """``(seq, payload, end offset)`` of each whole, intact frame from ``offset``, and where they stop.

    Parsing stops at the first frame that is short, too long or fails its checksum: what follows
    a torn frame cannot be trusted to be framed.
    """
    records: list[tuple[int, bytes, int]] = []
    previous = -1
    while offset + _HEADER.size <= len(data):
        length, seq, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        if length > _MAX_PAYLOAD or end > len(data) or seq <= previous:
            break
        payload = data[start:end]
        if zlib.crc32(seq.to_bytes(8, "big") + payload) != crc:
            break
        records.append((seq, payload, end))
        previous, offset = seq, end
    return records, offset


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int = 0
    last_seq: int = 0
    """0 while the segment holds no record."""
    sealed: bool = False
    """A write to it failed: later entries go to a new segment."""


def spool_error(exc: OSError, directory: Path) -> DiskFullError | InternalError:
    """What a call whose entry could not be spooled fails with: RESOURCE_EXHAUSTED when the disk is full.

    The call failed because it could not be recorded; the operator reads where in the log.
    """
    if is_disk_full(exc):
        logger.error("the disk holding the audit spool %s is full: calls fail until space is freed", directory)
        return DiskFullError.of(directory.name.replace("_", " "))
    logger.error("audit spool %s could not be written: %s", directory, exc)
    return InternalError("the audit spool could not be written: the call could not be recorded, so it failed")


class AuditSpool:
    """Segment files of framed entries in ``directory``; thread-safe, so file I/O runs off the event loop."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._next_seq = 1
        self._cursor: tuple[Path, int, int] | None = None
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.spool_id = ""
        """Random, made with the spool: two spools never share the numbers management remembers,
        even two replicas of a service with the same name on different hosts."""

    # --- opening and replay --------------------------------------------------------------

    def open(self) -> int:
        """Create the directory or replay it: cut torn tails and find the next sequence number.

        Returns the number of entries still waiting to be shipped.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        self.spool_id = self._load_or_create_id()
        floor = time.time_ns() // 1000  # the numbering survives even a spool deleted by hand
        waiting = 0
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                first = int(path.name.removesuffix(_SUFFIX))
            except ValueError:
                logger.warning("ignoring %s in the audit spool: not a segment", path.name)
                continue
            segment = _Segment(first, path)
            data = path.read_bytes()
            records, _ = parse_frames(data)
            if records and records[0][0] < first:  # not this segment's numbering: nothing in it is trusted
                records = []
            good = records[-1][2] if records else 0
            if good < len(data):
                if data.count(0, good) != len(data) - good:  # zeros are the unused reservation
                    dropped = len(data) - good
                    logger.warning("audit spool %s: dropping a torn or corrupt tail of %d bytes", path.name, dropped)
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            segment.size = good
            segment.last_seq = records[-1][0] if records else 0
            waiting += len(records)
            floor = max(floor, first, segment.last_seq + 1)
            self._segments.append(segment)
        self._next_seq = floor
        return waiting

    def _load_or_create_id(self) -> str:
        path = self.directory / "id"
        try:
            existing = path.read_text().strip()
        except FileNotFoundError:
            existing = ""
        if len(existing) == 16 and all(c in "0123456789abcdef" for c in existing):
            return existing
        spool_id = os.urandom(8).hex()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, spool_id.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._sync_directory()
        return spool_id

    # --- appending -----------------------------------------------------------------------

    async def append(self, payload: bytes) -> None:
        """Return once ``payload`` is on disk; appends made meanwhile share the write and its fsync.

        Raises:
            DiskFullError: the disk is full.
            InternalError: the spool could not be written for another reason.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((payload, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="audit-spool-writer")
        await future

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            outcome: BaseException | None = None
            try:
                await asyncio.to_thread(self.append_nowait, [payload for payload, _ in batch])
            except OSError as exc:
                outcome = spool_error(exc, self.directory)
            except BaseException as exc:  # cancelled, say: its callers must still be answered
                for _, future in batch + self._pending:
                    if not future.done():
                        future.set_exception(InternalError("the audit spool stopped"))
                raise exc
            for _, future in batch:
                if future.done():
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)

    def append_nowait(self, payloads: list[bytes]) -> list[int]:
        """Write and fsync ``payloads`` as one batch (blocking); their sequence numbers.

        On failure nothing is reported written and the numbers the batch would have had are
        not reused: its frames may have reached the disk in part, and the next append starts a
        new segment.
        """
        with self._lock:
            if self._fd is None or self._segments[-1].sealed or self._segments[-1].size >= self._segment_bytes:
                self._start_segment()
            assert self._fd is not None
            segment = self._segments[-1]
            seqs = list(range(self._next_seq, self._next_seq + len(payloads)))
            data = b"".join(frame(seq, payload) for seq, payload in zip(seqs, payloads, strict=True))
            self._next_seq += len(payloads)
            try:
                view, offset = memoryview(data), segment.size
                while view:
                    written = os.pwrite(self._fd, view, offset)
                    view, offset = view[written:], offset + written
                os.fsync(self._fd)
            except OSError:
                self._abandon_segment(segment)
                raise
            segment.size += len(data)
            segment.last_seq = seqs[-1] if seqs else segment.last_seq
            return seqs

    def _start_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        current = self._segments[-1] if self._segments else None
        if current is None or current.size > 0 or current.sealed:
            current = _Segment(self._next_seq, self.directory / f"{self._next_seq:020d}{_SUFFIX}")
            self._segments.append(current)
        self._fd = self._create(current.path)

    def _create(self, path: Path) -> int:
        """Open a new segment for writing, with :data:`RESERVED_BYTES` of disk claimed for it."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVED_BYTES)
        except OSError as exc:  # a full disk, or a file system that cannot reserve: write as space allows
            logger.warning("audit spool %s: could not reserve space (%s)", path.name, exc.strerror)
        self._sync_directory()
        return fd

    def _abandon_segment(self, segment: _Segment) -> None:
        """Cut what a failed write may have left and stop appending to ``segment``."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, segment.size)
        except OSError:
            logger.warning("audit spool %s: could not cut a failed write; replay will drop it", segment.path.name)
        os.close(self._fd)
        self._fd = None
        segment.sealed = True  # later entries start a segment of their own, at fresh sequence numbers

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- shipping ------------------------------------------------------------------------

    def read(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` spooled entries numbered above ``after_seq``, oldest first (blocking)."""
        with self._lock:
            found: list[tuple[int, bytes]] = []
            for segment in self._segments:
                if segment.last_seq <= after_seq or len(found) >= limit:
                    continue
                start = 0
                if self._cursor is not None and self._cursor[0] == segment.path and self._cursor[2] <= after_seq:
                    start = self._cursor[1]
                with open(segment.path, "rb") as f:
                    f.seek(start)
                    data = f.read(segment.size - start)
                records, _ = parse_frames(data)
                for seq, payload, end in records:
                    if len(found) >= limit:
                        break
                    if seq > after_seq:
                        found.append((seq, payload))
                        self._cursor = (segment.path, start + end, seq)
            return found

    def release(self, through_seq: int) -> None:
        """Management holds every entry up to ``through_seq``: delete the segments it covers (blocking).

        The newest segment is replaced by an empty one named after the next sequence number
        before it is deleted, so the numbering carries over a restart.
        """
        with self._lock:
            active = self._segments[-1] if self._segments else None
            if active is not None and active.last_seq and active.last_seq <= through_seq:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._segments.append(_Segment(self._next_seq, self.directory / f"{self._next_seq:020d}{_SUFFIX}"))
                self._fd = self._create(self._segments[-1].path)
            keep: list[_Segment] = []
            for segment in self._segments[:-1]:
                if segment.last_seq <= through_seq:
                    segment.path.unlink(missing_ok=True)
                else:
                    keep.append(segment)
            self._segments = [*keep, *self._segments[-1:]]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
