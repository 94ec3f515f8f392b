"""The audit log over a real platform: cursor pages (QueryAuditPage) hold every entry once while
calls keep adding entries, `cloister audit export` writes the same entries, the index is built
for entries stored without one, and the storage database shows no user id or message."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cloister import Client, Credentials, Trust
from cloister.errors import AccessDeniedError, InvalidArgumentError
from cloister.testing import RunningPlatform

USER = "auditee-zq7x"
"""A user id that appears nowhere but in this test's calls."""


def _connect(platform: RunningPlatform, user: str, password: str) -> Client:
    return Client.connect(
        platform.frontend_address,
        trust=Trust.from_files(platform.as_root_ca, platform.enclave_info),
        credentials=Credentials(user, password),
        authentication=platform.authentication_address,
    )


def _export(platform: RunningPlatform, *extra: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "cloister", "audit", "export", "--state-dir", str(platform.state_dir), *extra]
    return subprocess.run(command, capture_output=True, timeout=60)


def _settled(client: Client, query: str, expect: int) -> None:
    """Wait until ``query`` finds ``expect`` entries: the services ship their spools within a second."""
    deadline = time.monotonic() + 20
    while len(list(client.audit.entries(query))) < expect:
        assert time.monotonic() < deadline, f"{expect} entries for {query!r} never arrived"
        time.sleep(0.2)


def _database_bytes(platform: RunningPlatform) -> bytes:
    storage = platform.state_dir / "storage"
    return b"".join(p.read_bytes() for p in sorted(storage.iterdir()) if p.name.startswith("cloister.db"))


def test_pages_hold_every_entry_once_while_calls_go_on_and_export_writes_them(own_platform: RunningPlatform) -> None:
    platform = own_platform
    root = _connect(platform, platform.admin_user, platform.admin_password)
    root.users.register(USER, "auditee-password", "FunctionOwner")
    user = _connect(platform, USER, "auditee-password")
    stop = threading.Event()

    def calls() -> None:
        while not stop.is_set():
            user.functions.list()

    worker = threading.Thread(target=calls)
    worker.start()
    seen: list[int] = []
    after = 0
    try:
        for _ in range(40):
            page = root.audit.query("", limit=7, after=after)
            seen += [r.seq for r in page.records]
            after = page.next_after
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join()
    _settled(root, f"message:list_functions AND user:{USER}", 1)
    time.sleep(1.0)  # the last calls' entries reach management
    rest = list(root.audit.entries("", after=after))
    seen += [r.seq for r in rest]
    assert seen == list(range(1, seen[-1] + 1)), "every entry once, in order"
    mine = list(root.audit.entries(f"user:{USER}"))
    assert len(mine) > 10 and all(f"user: {USER}" in r.entry.user for r in mine)

    # Teaclave's query still answers newest first; a page is only for administrators.
    query = f"message:list_functions AND user:{USER}"
    ranked = sorted(root.audit.entries(query), key=lambda r: (-(r.entry.microsecond // 1_000_000), r.seq))
    assert root.audit.newest(query, limit=3) == [r.entry for r in ranked[:3]]
    with pytest.raises(AccessDeniedError):
        user.audit.query("")
    with pytest.raises(InvalidArgumentError, match="unbalanced"):
        root.audit.query('"open')

    # The export holds the same entries, as chained records.
    exported = _export(platform, "--since", "0")
    assert exported.returncode == 0, exported.stderr
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["seq"] for r in records[: len(seen)]] == seen
    by_seq = {r.seq: r.entry for r in mine}
    assert all(records[seq - 1]["entry"]["user"] == entry.user for seq, entry in by_seq.items())
    target = platform.state_dir / "tail.jsonl"
    since = seen[-1] - 5
    exported = _export(platform, "--since", str(since), "-o", str(target))
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [json.loads(line)["seq"] for line in target.read_bytes().splitlines()][:5] == list(
        range(since + 1, since + 6)
    )
    assert b"next time: --since" in exported.stderr

    root.close()
    user.close()
    platform.stop()
    raw = _database_bytes(platform)
    assert b"audit_index-" in raw
    for clear in (USER.encode(), USER.encode().hex().encode(), b"list_functions", b"PlatformAdmin"):
        assert clear not in raw, f"{clear!r} is readable in the storage database"


def test_entries_stored_before_the_index_are_indexed_after_an_upgrade(own_platform: RunningPlatform) -> None:
    platform = own_platform
    root = _connect(platform, platform.admin_user, platform.admin_password)
    for _ in range(5):
        root.functions.list()
    _settled(root, "message:list_functions -message:authorize", 5)
    before = [r.seq for r in root.audit.entries("message:list_functions")]
    root.close()
    platform.stop()

    # What a version without the index left behind: the entries, no index records.
    database = platform.state_dir / "storage" / "cloister.db"
    db = sqlite3.connect(database)
    removed = db.execute("DELETE FROM kv WHERE key >= ? AND key < ?", (b"audit_index", b"audit_indey")).rowcount
    db.commit()
    db.close()
    assert removed > 0

    platform.restart()
    root = _connect(platform, platform.admin_user, platform.admin_password)
    after = [r.seq for r in root.audit.entries("message:list_functions")]
    assert after[: len(before)] == before
    assert len(root.audit.newest("message:list_functions -message:authorize", limit=100)) >= 5
    root.close()
    db = sqlite3.connect(f"file:{Path(database)}?mode=ro", uri=True)
    (indexed,) = db.execute(
        "SELECT count(*) FROM kv WHERE key >= ? AND key < ?", (b"audit_index", b"audit_indey")
    ).fetchone()
    db.close()
    assert indexed > 0
