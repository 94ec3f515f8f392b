"""``cloister audit verify``: check the audit log's hash chain, offline or while running.

The stored log is checked from its anchor (where retention last cut it) to its head, and the
export files are checked to chain from the first entry into that anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cloister.config import Settings
from cloister.crypto.sealing import Sealer
from cloister.errors import ConfigurationError
from cloister.model.audit import ChainAnchor, ChainHead, verify_chain, verify_exports
from cloister.services.management.audit import ANCHOR_KEY, ENTRY_PREFIX, HEAD_KEY, entry_seq, load_anchor, load_head
from cloister.services.management.audit_retention import export_files
from cloister.storage.sqlite import SQLiteStore


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
    key_path = settings.storage_key_path
    if not key_path.exists() or not settings.database_path.exists():
        raise ConfigurationError(f"no Cloister storage in {settings.state_dir}")
    store = SQLiteStore(settings.database_path, Sealer(key_path.read_bytes()))
    try:
        keys = store.keys_with_prefix(ENTRY_PREFIX)
        *values, raw_head, raw_anchor = store.read([*keys, HEAD_KEY, ANCHOR_KEY])
    finally:
        store.close()
    records = [(entry_seq(key), value.value) for key, value in zip(keys, values, strict=True) if value is not None]
    head = load_head(raw_head.value if raw_head is not None else None)
    anchor = load_anchor(raw_anchor.value if raw_anchor is not None else None)
    exported: int | None = None
    past_anchor: dict[int, bytes] = {}
    if check_exports:
        files = export_files(exports or settings.audit_export_dir)
        exported, past_anchor = verify_exports(((path.name, path.read_bytes()) for path in files), anchor)
    return Verification(verify_chain(records, head, anchor, past_anchor), exported, head, anchor)
