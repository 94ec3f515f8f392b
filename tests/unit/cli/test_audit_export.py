"""``cloister audit export``: the entries after a number, as the chained records they are stored as,
reaching into retention's export files for entries it cut."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from policy_authorizer import PolicyAuthorizer
from postgres_cluster import PostgresCluster

from cloister.cli.audit import export, verify
from cloister.config import Settings, load_settings
from cloister.crypto.sealing import Sealer, load_or_create_key
from cloister.errors import ConfigurationError
from cloister.model.audit import AuditChainBrokenError, AuditEntry, ChainedEntry, ChainHead, verify_chain
from cloister.services.management.audit import HEAD_KEY, AuditLog, entry_key, load_head
from cloister.services.management.audit_retention import AuditRetention
from cloister.storage.engine import open_storage
from cloister.storage.local import LocalStorage
from cloister.storage.sqlite import SQLiteStore

NOW = 1_800_000_000.0
DAY = 86_400


def _platform(tmp_path: Path, ages_in_days: list[float]) -> Settings:
    """A stopped platform's state whose audit log holds one entry per age, oldest first."""
    settings = load_settings(None, {}, state_dir=tmp_path / "state")
    settings.database_path.parent.mkdir(parents=True)
    store = SQLiteStore(settings.database_path, Sealer(load_or_create_key(settings.storage_key_path)))
    store.start()
    storage = LocalStorage(store)
    entries = [
        AuditEntry(int((NOW - age * DAY) * 1e6), bytes(16), "", f"call {n}", True)
        for n, age in enumerate(ages_in_days, 1)
    ]

    async def build() -> None:
        await AuditLog(storage, PolicyAuthorizer()).save(entries)
        await AuditRetention(storage, settings.audit_export_dir, 30 * DAY, 3600, now=lambda: NOW).apply()

    try:
        asyncio.run(build())
    finally:
        store.close()
    return settings


def _lines(settings: Settings, since: int, exports: Path | None = None) -> list[dict]:
    out = io.BytesIO()
    result = export(settings, since, out, exports)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert result.count == len(lines) and result.last == (lines[-1]["seq"] if lines else since)
    return lines


def test_export_writes_the_entries_after_since_as_chained_records(tmp_path: Path) -> None:
    settings = _platform(tmp_path, [1, 1, 1, 1, 1])
    lines = _lines(settings, 2)
    assert [line["seq"] for line in lines] == [3, 4, 5]
    assert [line["entry"]["message"] for line in lines] == ["call 3", "call 4", "call 5"]
    out = io.BytesIO()
    export(settings, 0, out)
    raw = out.getvalue().splitlines()
    last = ChainedEntry.from_json(json.loads(raw[-1]))
    assert verify_chain([(n, line) for n, line in enumerate(raw, 1)], ChainHead(5, last.digest)) == 5
    assert _lines(settings, 5) == [] and _lines(settings, 99) == []


def test_export_reads_what_retention_cut_from_its_export_files(tmp_path: Path) -> None:
    settings = _platform(tmp_path, [90, 80, 70, 1, 1])  # the first three are cut and exported
    assert [line["seq"] for line in _lines(settings, 0)] == [1, 2, 3, 4, 5]
    assert [line["seq"] for line in _lines(settings, 2)] == [3, 4, 5]
    moved = tmp_path / "archive"
    settings.audit_export_dir.rename(moved)
    with pytest.raises(ConfigurationError, match="entries 2 to 3 were cut from storage by retention"):
        _lines(settings, 1)
    assert [line["seq"] for line in _lines(settings, 1, exports=moved)] == [2, 3, 4, 5]
    assert [line["seq"] for line in _lines(settings, 3)] == [4, 5]  # storage alone still has these


def test_export_needs_a_platform(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no Cloister storage"):
        export(load_settings(None, {}, state_dir=tmp_path), 0, io.BytesIO())


def test_export_to_a_file_writes_it_private_and_never_through_a_symlink(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cloister.cli.main import main

    settings = _platform(tmp_path, [1, 1])
    state = ["--state-dir", str(settings.state_dir)]
    existing = tmp_path / "audit.jsonl"
    existing.write_text("old and longer than what replaces it\n" * 10)
    existing.chmod(0o644)
    result = CliRunner().invoke(main, ["audit", "export", *state, "--since", "1", "-o", str(existing)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["seq"] for line in existing.read_text().splitlines()] == [2]
    assert existing.stat().st_mode & 0o777 == 0o600
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "planted").symlink_to(victim)
    result = CliRunner().invoke(main, ["audit", "export", *state, "--since", "0", "-o", str(tmp_path / "planted")])
    assert result.exit_code == 1 and "cannot write" in result.output
    assert victim.read_text() == "keep me"


def test_export_and_verify_read_the_configured_postgres_database(
    tmp_path: Path, postgres_cluster: PostgresCluster, postgres_database: str
) -> None:
    env = {
        "CLOISTER_STORAGE__BACKEND": "postgres",
        "CLOISTER_STORAGE__DSN": postgres_cluster.dsn(postgres_database),
        "CLOISTER_STORAGE__DSN_PASSWORD_FILE": str(postgres_cluster.password_file),
    }
    settings = load_settings(None, env, state_dir=tmp_path / "state")
    settings.storage_key_path.parent.mkdir(parents=True)
    store = open_storage(settings, Sealer(load_or_create_key(settings.storage_key_path)))
    entries = [AuditEntry(int(NOW * 1e6) + n, bytes(16), "", f"call {n}", True) for n in range(1, 4)]

    async def build() -> None:
        await store.start()
        try:
            await AuditLog(LocalStorage(store), PolicyAuthorizer()).save(entries)
        finally:
            await store.close()

    asyncio.run(build())
    assert [line["entry"]["message"] for line in _lines(settings, 1)] == ["call 2", "call 3"]
    assert verify(settings, check_exports=False).stored == 3
    assert not settings.database_path.exists()  # read from PostgreSQL, not an empty SQLite file


def _appending_after_listing(monkeypatch: pytest.MonkeyPatch, settings: Settings, count: int, drop_last: bool) -> None:
    """Make verify's key listing be followed by a running platform's append of ``count`` entries
    (and, with ``drop_last``, by the removal of the newest entry, as tampering would)."""
    from cloister.cli import audit as audit_cli
    from cloister.storage.ops import Delete

    listing = audit_cli._OfflineStore.keys_with_prefix

    def keys_then_append(self: audit_cli._OfflineStore, prefix: bytes) -> list[bytes]:
        keys = listing(self, prefix)
        store = SQLiteStore(settings.database_path, Sealer(settings.storage_key_path.read_bytes()))
        store.start()
        try:
            entries = [AuditEntry(int(NOW * 1e6) + n, bytes(16), "", f"late {n}", True) for n in range(count)]
            asyncio.run(AuditLog(LocalStorage(store), PolicyAuthorizer()).save(entries))
            if drop_last:
                head = load_head(asyncio.run(LocalStorage(store).get(HEAD_KEY)))
                asyncio.run(LocalStorage(store).commit([Delete(entry_key(head.count))]))
        finally:
            store.close()
        return keys

    monkeypatch.setattr(audit_cli._OfflineStore, "keys_with_prefix", keys_then_append)


def test_verify_checks_a_log_that_grows_while_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _platform(tmp_path, [1, 1, 1])
    _appending_after_listing(monkeypatch, settings, count=4, drop_last=False)
    verification = verify(settings, check_exports=False)
    assert verification.stored == 7 and verification.head.count == 7


def test_verify_still_finds_the_newest_entry_removed_while_the_log_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _platform(tmp_path, [1, 1, 1])
    _appending_after_listing(monkeypatch, settings, count=4, drop_last=True)
    with pytest.raises(AuditChainBrokenError, match="holds 6 entries after entry 0 but its head records 7"):
        verify(settings, check_exports=False)
