"""The store on a full disk: writes fail as DiskFullError, stored data stays intact, writes resume once space is freed.

A real tmpfs of a few MiB stands in for the state disk; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path

import pytest
from async_helpers import run
from tmpfs import fill, mounted_tmpfs

from cloister.crypto.sealing import Sealer
from cloister.errors import DiskFullError, StatusCode
from cloister.storage.ops import Enqueue, Put
from cloister.storage.sqlite import SQLiteStore

KEY = bytes(range(32))


def test_a_full_disk_refuses_writes_keeps_data_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    disk = tmp_path / "disk"
    with mounted_tmpfs(disk, 4 * 1024 * 1024):
        path = disk / "storage" / "cloister.db"

        async def scenario() -> None:
            store = SQLiteStore(path, Sealer(KEY))
            store.start()
            try:
                stored = {f"task-{n}".encode(): os.urandom(2000) for n in range(50)}
                await store.commit([Put(key, value) for key, value in stored.items()])
                filler = fill(disk)

                # Large enough that the pages cannot all be cached: SQLite has to ask for space.
                big = [Put(f"file-{n}".encode(), os.urandom(8000)) for n in range(200)]
                attempts = [store.commit(big), store.commit([Enqueue(b"queue", b"x")]), store.commit(big)]
                outcomes = await asyncio.gather(*attempts, return_exceptions=True)
                failed = [o for o in outcomes if isinstance(o, BaseException)]
                assert failed, "nothing failed: the disk was not full"
                for error in failed:
                    assert isinstance(error, DiskFullError), repr(error)
                    assert error.status is StatusCode.RESOURCE_EXHAUSTED
                    assert error.message == "the storage service is out of disk space; try again once space is freed"
                    assert str(disk) not in error.message  # no path reaches a client

                for key, value in stored.items():  # what was stored reads back whole
                    current = store.get(key)
                    assert current is not None and current.value == value

                filler.unlink()
                await store.commit(big)  # the same store, no restart
                again = store.get(b"file-199")
                assert again is not None and again.value == big[-1].value
            finally:
                store.close()
            check = sqlite3.connect(path)
            try:
                assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            finally:
                check.close()

        with caplog.at_level(logging.WARNING, logger="cloister.storage.sqlite"):
            run(scenario)
        full = [r for r in caplog.records if "is full" in r.getMessage()]
        assert len(full) == 1 and str(path.parent) in full[0].getMessage()  # the operator learns where, once
        assert any("has room again" in r.getMessage() for r in caplog.records)


def test_the_write_ahead_log_is_cut_back_after_a_burst(tmp_path: Path) -> None:
    """SQLite keeps a write-ahead log at the size of its largest transaction unless told otherwise."""
    wal = tmp_path / "db-wal"

    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "db", Sealer(KEY))
        store.start()
        try:
            await store.commit([Put(f"k-{n}".encode(), os.urandom(4000)) for n in range(3000)])  # ~12 MB at once
            assert wal.stat().st_size > 8 * 1024 * 1024
            await store.commit([Put(b"after", b"x")])
            await store.commit([Put(b"after", b"y")])
            assert wal.stat().st_size <= 4 * 1024 * 1024
        finally:
            store.close()

    run(scenario, timeout=120)
