"""``cloister audit verify`` and ``export``: check the audit log's hash chain, and write its
entries out as JSON lines, offline or while the platform runs.

The stored log is checked from its anchor (where retention last cut it) to its head, and the
export files are checked to chain from the first entry into that anchor. An export writes each
entry as the chained record it is stored as (the lines of retention's export files), so the
entries it writes can be checked against each other and against later exports.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cloister.config import Settings
from cloister.crypto.sealing import Sealer
from cloister.errors import ConfigurationError
from cloister.model.audit import ChainAnchor, ChainHead, verify_chain, verify_exports
from cloister.services.management.audit import (
    ANCHOR_KEY,
    ENTRY_PREFIX,
    HEAD_KEY,
    entry_key,
    entry_seq,
    load_anchor,
    load_head,
)
from cloister.services.management.audit_retention import export_files
from cloister.storage.engine import Storage, open_storage
from cloister.storage.ops import Versioned


@dataclass(frozen=True)
class Verification:
    stored: int
    """Entries verified in storage, after the anchor."""
    exported: int | None
    """Entries verified in export files, up to the anchor; None when the exports were not checked."""
    head: ChainHead
    anchor: ChainAnchor


def verify(settings: Settings, exports: Path | None = None, check_exports: bool = True) -> Verification:
    """What was verified, if the log verifies; ``exports`` defaults to the configured export directory.

    Raises:
        AuditChainBrokenError: it does not; the message says where and how.
        ConfigurationError: there is no storage to check.
    """
    store = _open(settings)
    try:
        records, head, anchor = _stored_log(store)
    finally:
        store.close()
    exported: int | None = None
    past_anchor: dict[int, bytes] = {}
    if check_exports:
        files = export_files(exports or settings.audit_export_dir)
        exported, past_anchor = verify_exports(((path.name, path.read_bytes()) for path in files), anchor)
    return Verification(verify_chain(records, head, anchor, past_anchor), exported, head, anchor)


def _stored_log(store: _OfflineStore) -> tuple[list[tuple[int, bytes]], ChainHead, ChainAnchor]:
    """The stored entries (number, JSON), head and anchor as one state of a log that may be growing.

    Listing the keys and reading them are two steps, and a running platform appends in between:
    the entries it added are read by number up to the head read with the others (an append commits
    its entries with the head, and retention deletes only the oldest, with the anchor). A cut that
    moved the anchor while the tail was read makes it read again.
    """
    for _ in range(_SNAPSHOT_ATTEMPTS):
        keys = store.keys_with_prefix(ENTRY_PREFIX)
        *values, raw_head, raw_anchor = store.read([*keys, HEAD_KEY, ANCHOR_KEY])
        head, anchor = _head_and_anchor(raw_head, raw_anchor)
        records = [(entry_seq(k), v.value) for k, v in zip(keys, values, strict=True) if v is not None]
        listed = max((entry_seq(key) for key in keys), default=0)
        tail = range(max(listed, anchor.seq) + 1, head.count + 1)
        if not tail:
            return records, head, anchor
        *values, raw_anchor = store.read([*(entry_key(n) for n in tail), ANCHOR_KEY])
        if _head_and_anchor(None, raw_anchor)[1] == anchor:
            return records + [(n, v.value) for n, v in zip(tail, values, strict=True) if v is not None], head, anchor
    return records, head, anchor  # the log kept being cut: verify what was read, which will say what is off


def _head_and_anchor(raw_head: Versioned | None, raw_anchor: Versioned | None) -> tuple[ChainHead, ChainAnchor]:
    head = load_head(raw_head.value if raw_head is not None else None)
    return head, load_anchor(raw_anchor.value if raw_anchor is not None else None)


_SNAPSHOT_ATTEMPTS = 5
_READ_CHUNK = 1_000


class _OfflineStore:
    """The configured storage engine, read from synchronous code through a private event loop."""

    def __init__(self, storage: Storage) -> None:
        self._runner = asyncio.Runner()
        self._storage = storage
        try:
            self._runner.run(storage.start())
        except BaseException:
            self._runner.close()
            raise

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        return self._runner.run(self._storage.keys_with_prefix(prefix))

    def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        return self._runner.run(self._storage.read(keys))

    def close(self) -> None:
        try:
            self._runner.run(self._storage.close())
        finally:
            self._runner.close()


def _open(settings: Settings) -> _OfflineStore:
    """The storage the settings configure: the SQLite file, or the PostgreSQL database."""
    key_path = settings.storage_key_path
    if not key_path.exists() or (settings.storage.backend == "sqlite" and not settings.database_path.exists()):
        raise ConfigurationError(f"no Cloister storage in {settings.state_dir}")
    return _OfflineStore(open_storage(settings, Sealer(key_path.read_bytes())))


@dataclass(frozen=True)
class Export:
    count: int
    """Entries written."""
    last: int
    """The number of the last entry written (``since`` when none was): the next export's ``--since``."""


def export(settings: Settings, since: int, out: BinaryIO, exports: Path | None = None) -> Export:
    """Write every entry numbered above ``since`` to ``out``, one JSON line each, oldest first.

    Entries retention has cut from storage are read from its export files (``exports``, by
    default the configured export directory).

    Raises:
        ConfigurationError: there is no storage, or entries it no longer holds are not in the
            export files either, or one went missing while it was read.
    """
    store = _open(settings)
    try:
        head, anchor = _head_and_anchor(*store.read([HEAD_KEY, ANCHOR_KEY]))
        last = since
        if since < anchor.seq:
            for line in _exported(exports or settings.audit_export_dir, since, anchor.seq):
                out.write(line + b"\n")
            last = anchor.seq
        for start in range(last + 1, head.count + 1, _READ_CHUNK):
            numbers = range(start, min(start + _READ_CHUNK, head.count + 1))
            for seq, value in zip(numbers, store.read([entry_key(n) for n in numbers]), strict=True):
                if value is None:
                    raise ConfigurationError(
                        f"audit entry {seq} went missing while it was exported: retention cut it meanwhile "
                        "(export again) or the log is damaged (run `cloister audit verify`)"
                    )
                out.write(value.value + b"\n")
                last = seq
    finally:
        store.close()
    return Export(last - since if last > since else 0, last)


def _exported(directory: Path, since: int, upto: int) -> Iterator[bytes]:
    """The lines of retention's export files for entries above ``since`` up to ``upto``, in order."""
    expected = since + 1
    for path in export_files(directory):
        for line in path.read_bytes().splitlines():
            try:
                seq = int(json.loads(line)["seq"])
            except (ValueError, KeyError, TypeError):
                raise ConfigurationError(f"{path} holds a line that is not an audit record") from None
            if seq < expected or seq > upto:
                continue
            if seq != expected:
                break
            yield line
            expected += 1
        if expected > upto:
            return
    raise ConfigurationError(
        f"audit entries {expected} to {upto} were cut from storage by retention and are not in the export "
        f"files in {directory}; pass --exports DIR, or a --since of {upto} or more"
    )
