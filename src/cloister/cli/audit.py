"""``cloister audit verify``: check the stored audit log's hash chain, offline or while running."""

from __future__ import annotations

import json

from cloister.config import Settings
from cloister.crypto.sealing import Sealer
from cloister.errors import ConfigurationError
from cloister.model.audit import ChainHead, verify_chain
from cloister.services.management.audit import HEAD_KEY
from cloister.storage.sqlite import SQLiteStore


def verify(settings: Settings) -> tuple[int, ChainHead]:
    """The number of entries and the chain's head, if the log verifies.

    Raises:
        AuditChainBrokenError: it does not; the message says where and how.
        ConfigurationError: there is no storage to check.
    """
    key_path = settings.state_dir / "storage" / "storage.key"
    if not key_path.exists() or not settings.database_path.exists():
        raise ConfigurationError(f"no Cloister storage in {settings.state_dir}")
    store = SQLiteStore(settings.database_path, Sealer(key_path.read_bytes()))
    try:
        keys = store.keys_with_prefix(b"audit")
        records = []
        for key in keys:
            value = store.get(key)
            if value is not None:
                records.append((int(key.split(b"-", 1)[1]), value.value))
        raw_head = store.get(HEAD_KEY)
        head = ChainHead.from_json(json.loads(raw_head.value)) if raw_head else ChainHead()
        return verify_chain(records, head), head
    finally:
        store.close()
