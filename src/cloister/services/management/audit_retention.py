"""Audit retention: entries older than the setting are exported to a file, then deleted from storage.

The chain stays verifiable across the cut: each deletion commits, with it, an anchor naming the
last deleted entry (its number and hash) and the export file holding it (its name and SHA-256),
and ``verify_chain`` starts from there. An export is written, fsynced and renamed into place
before any entry in it is deleted; deletions go in batches, each with its anchor, so a large
backlog never makes one huge commit, and a cut interrupted by a crash is finished from its export
file at the next pass. Only a prefix of the chain is ever cut, and only one that verifies. The
search index's records of blocks whose every entry was cut go too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from cloister.model.audit import AuditChainBrokenError, ChainAnchor, ChainedEntry, chain_hash
from cloister.services.management import audit_index
from cloister.services.management.audit import ANCHOR_KEY, HEAD_KEY, entry_key, load_anchor, load_head
from cloister.storage.client import StorageClient
from cloister.storage.ops import Delete, Op
from cloister.storage.records import put

logger = logging.getLogger(__name__)

EXPORT_ENTRIES = 10_000
"""The most entries one export file holds."""
DELETE_BATCH = 1_000
"""The most entries one storage commit deletes."""
_READ_CHUNK = 1_000
_EXPORT_NAME = re.compile(r"audit-(\d{20})-(\d{20})\.jsonl")


def _record(raw: bytes) -> ChainedEntry:
    return ChainedEntry.from_json(json.loads(raw))


def export_name(first: int, last: int) -> str:
    """``audit-<first>-<last>.jsonl``: names sort in chain order."""
    return f"audit-{first:020d}-{last:020d}.jsonl"


def export_files(directory: Path) -> list[Path]:
    """The export files in ``directory``, oldest entries first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _EXPORT_NAME.fullmatch(p.name))


class AuditRetention:
    """Cuts the stored log down to ``retention_seconds``, exporting what it cuts to ``export_dir``."""

    def __init__(
        self,
        storage: StorageClient,
        export_dir: Path,
        retention_seconds: float,
        interval_seconds: float,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._export_dir = export_dir
        self._retention = retention_seconds
        self._interval = interval_seconds
        self._now = now

    async def run(self) -> None:
        """Apply the retention now and then every interval, for ever (run it :func:`supervised`)."""
        while True:
            cut = await self.apply()
            if cut:
                logger.info("audit retention: exported and deleted %d entries", cut)
            await asyncio.sleep(self._interval)

    async def apply(self) -> int:
        """Export and delete every entry older than the retention; the number deleted.

        Raises:
            AuditChainBrokenError: the entries to cut do not verify; nothing is cut.
        """
        anchor = load_anchor(await self._storage.get(ANCHOR_KEY))
        cut, anchor = await self._finish_interrupted(anchor)
        cutoff = int((self._now() - self._retention) * 1_000_000)
        head = load_head(await self._storage.get(HEAD_KEY))
        while True:
            raws = await self._expired(anchor, head.count, cutoff)
            if raws:
                name = export_name(anchor.seq + 1, anchor.seq + len(raws))
                sha256 = await asyncio.to_thread(self._write_export, name, b"".join(raw + b"\n" for raw in raws))
                anchor = await self._delete(anchor, [_record(raw) for raw in raws], name, sha256)
                cut += len(raws)
            if len(raws) < EXPORT_ENTRIES:
                await audit_index.prune(self._storage, anchor.seq)
                return cut

    async def _expired(self, anchor: ChainAnchor, last: int, cutoff: int) -> list[bytes]:
        """Stored JSON of the entries after ``anchor`` older than ``cutoff``, up to the first newer one.

        Each is checked against the chain: a log that does not verify is never exported as if it did.
        """
        found: list[bytes] = []
        previous, seq = anchor.digest, anchor.seq
        while seq < last and len(found) < EXPORT_ENTRIES:
            upto = min(last, seq + _READ_CHUNK, seq + EXPORT_ENTRIES - len(found))
            keys = [entry_key(n) for n in range(seq + 1, upto + 1)]
            for value in await self._storage.read(keys):
                seq += 1
                if value is None:
                    raise AuditChainBrokenError(f"audit entry {seq} is missing; run `cloister audit verify`")
                record = _record(value.value)
                if (
                    record.seq != seq
                    or record.previous != previous
                    or chain_hash(previous, seq, record.entry) != record.digest
                ):
                    raise AuditChainBrokenError(f"audit entry {seq} does not verify; run `cloister audit verify`")
                if record.entry.microsecond >= cutoff:
                    return found
                found.append(value.value)
                previous = record.digest
        return found

    def _write_export(self, name: str, content: bytes) -> str:
        """Write ``content`` as ``name`` (0600), durably, before anything in it is deleted; its SHA-256."""
        self._export_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._export_dir / name
        partial = path.with_name(f".{name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, path)
        directory = os.open(self._export_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return hashlib.sha256(content).hexdigest()

    async def _delete(self, anchor: ChainAnchor, records: list[ChainedEntry], name: str, sha256: str) -> ChainAnchor:
        """Delete ``records`` in batches, each committed with the anchor it leaves behind."""
        for start in range(0, len(records), DELETE_BATCH):
            batch = records[start : start + DELETE_BATCH]
            anchor = ChainAnchor(batch[-1].seq, batch[-1].digest, name, sha256)
            ops: list[Op] = [Delete(entry_key(record.seq)) for record in batch]
            await self._storage.commit([*ops, put(ANCHOR_KEY, anchor)])
        return anchor

    async def _finish_interrupted(self, anchor: ChainAnchor) -> tuple[int, ChainAnchor]:
        """Delete what the anchor's export holds past the anchor: a cut that a crash interrupted."""
        match = _EXPORT_NAME.fullmatch(anchor.export)
        if match is None or int(match.group(2)) <= anchor.seq:
            return 0, anchor
        content = await asyncio.to_thread((self._export_dir / anchor.export).read_bytes)
        if hashlib.sha256(content).hexdigest() != anchor.sha256:
            raise AuditChainBrokenError(f"export {anchor.export} changed since it was written; nothing more is cut")
        rest = [r for r in map(_record, content.splitlines()) if r.seq > anchor.seq]
        logger.info("audit retention: finishing a cut interrupted after entry %d", anchor.seq)
        return len(rest), await self._delete(anchor, rest, anchor.export, anchor.sha256)
