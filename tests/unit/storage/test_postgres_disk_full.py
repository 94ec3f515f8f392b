"""PostgreSQL out of space: writes fail RESOURCE_EXHAUSTED, stored data stays whole, and writes
succeed again once space is freed, as with SQLite (test_sqlite_disk_full.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from postgres_cluster import ROLE, PostgresCluster
from storage_engines import PostgresEngine
from tmpfs import fill, mounted_tmpfs

from cloister.errors import DiskFullError, StatusCode
from cloister.storage.ops import Enqueue, Put


def test_a_full_disk_refuses_writes_keeps_data_and_recovers(
    postgres_cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # Not under tmp_path: the server's OS user must reach the tablespace, and pytest's base is private.
    base = Path(tempfile.mkdtemp(prefix="cloister-pg-disk-"))
    base.chmod(0o755)
    disk = base / "disk"
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        cleanup.enter_context(mounted_tmpfs(disk, 8 * 1024 * 1024))
        location = disk / "tablespace"
        location.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(disk, owner.pw_uid, owner.pw_gid)
            os.chown(location, owner.pw_uid, owner.pw_gid)
        tablespace = f"full_{uuid.uuid4().hex[:8]}"
        database = f"t_{uuid.uuid4().hex[:12]}"
        postgres_cluster.psql(f"CREATE TABLESPACE {tablespace} LOCATION '{location}'")
        postgres_cluster.psql(f'CREATE DATABASE "{database}" OWNER {ROLE} TABLESPACE {tablespace}')
        engine = PostgresEngine(postgres_cluster, database)
        try:

            async def scenario() -> None:
                store = await engine.open()
                try:
                    stored = {f"task-{n}".encode(): os.urandom(2000) for n in range(50)}
                    await store.commit([Put(key, value) for key, value in stored.items()])
                    filler = fill(disk)

                    big = [Put(f"file-{n}".encode(), os.urandom(8000)) for n in range(200)]
                    attempts = [store.commit(big), store.commit([Enqueue(b"queue", b"x")]), store.commit(big)]
                    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
                    failed = [o for o in outcomes if isinstance(o, BaseException)]
                    assert failed, "nothing failed: the disk was not full"
                    for error in failed:
                        assert isinstance(error, DiskFullError), repr(error)
                        assert error.status is StatusCode.RESOURCE_EXHAUSTED
                        assert (
                            error.message == "the storage service is out of disk space; try again once space is freed"
                        )

                    for key, value in stored.items():  # what was stored reads back whole
                        current = await store.get(key)
                        assert current is not None and current.value == value

                    filler.unlink()
                    await store.commit(big)  # the same store, no restart
                    again = await store.get(b"file-199")
                    assert again is not None and again.value == big[-1].value
                finally:
                    await store.close()

            with caplog.at_level(logging.WARNING, logger="cloister.storage.postgres"):
                asyncio.run(scenario())
            full = [r for r in caplog.records if "out of disk space" in r.getMessage()]
            assert len(full) == 1  # the operator learns once per episode
            assert postgres_cluster.password not in full[0].getMessage()
            assert any("has room again" in r.getMessage() for r in caplog.records)
        finally:
            postgres_cluster.drop_database(database)
            postgres_cluster.psql(f"DROP TABLESPACE IF EXISTS {tablespace}")
