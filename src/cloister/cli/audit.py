"""``cloister audit verify``: check the stored audit log's hash chain, offline or while running."""

from __future__ import annotations

from cloister.config import Settings
from cloister.crypto.sealing import Sealer
from cloister.errors import ConfigurationError
from cloister.model.audit import ChainHead, verify_chain
from cloister.services.management.audit import ENTRY_PREFIX, HEAD_KEY, entry_seq, load_head
from cloister.storage.sqlite import SQLiteStore


def verify(settings: Settings) -> tuple[int, ChainHead]:
    """The number of entries and the chain's head, if the log verifies.

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
        *values, raw_head = store.read([*keys, HEAD_KEY])
        records = [(entry_seq(key), value.value) for key, value in zip(keys, values, strict=True) if value is not None]
        head = load_head(raw_head)
        return verify_chain(records, head), head
    finally:
        store.close()
