"""With a retention set, old audit entries move to export files, and the log still verifies and answers."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import admin, audit_entries
from http_fixture_server import LOOPBACK_ENV

from cloister.testing import RunningPlatform, start_platform

RETENTION_SECONDS = 4.0


@pytest.fixture
def short_retention(tmp_path: Path) -> Iterator[RunningPlatform]:
    env = {
        **LOOPBACK_ENV,
        "CLOISTER_AUDIT__RETENTION_DAYS": str(RETENTION_SECONDS / 86_400),
        "CLOISTER_AUDIT__RETENTION_INTERVAL_SECONDS": "0.5",
    }
    with start_platform(tmp_path, env=env) as running:
        yield running


def _verify(platform: RunningPlatform, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cloister", "audit", "verify", "--state-dir", str(platform.state_dir), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _exports(platform: RunningPlatform) -> list[Path]:
    directory = platform.state_dir / "audit-export"
    return sorted(directory.glob("audit-*.jsonl")) if directory.is_dir() else []


def test_old_entries_are_exported_deleted_and_the_rest_verifies_and_answers(short_retention: RunningPlatform) -> None:
    platform = short_retention
    root = admin(platform)
    for _ in range(5):
        root.frontend.list_functions(platform.admin_user)
    deadline = time.monotonic() + 30
    while sum(p.read_bytes().count(b'"message":"list_functions"') for p in _exports(platform)) < 5:
        assert time.monotonic() < deadline, "old entries were not exported"
        time.sleep(0.2)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in _exports(platform))
    # Gone from the log, which still answers queries about what it holds.
    assert root.frontend.query_audit_logs("message:list_functions -message:authorize", 100) == {"logs": []}
    for _ in range(3):
        root.frontend.list_functions(platform.admin_user)
    recent = audit_entries(root, "message:list_functions -message:authorize", 3)
    assert len(recent) == 3
    while len(_exports(platform)) < 2:  # each pass that finds old entries writes one more file
        assert time.monotonic() < deadline, "a second export was not written"
        time.sleep(0.2)
    root.close()
    result = _verify(platform)  # while it runs
    assert result.returncode == 0, result.stderr
    assert "audit log verified" in result.stdout and "exported entries:" in result.stdout

    platform.stop()
    result = _verify(platform)
    assert result.returncode == 0, result.stderr
    assert "not checked" not in result.stdout
    oldest = _exports(platform)[0]
    content = oldest.read_bytes()
    oldest.unlink()
    result = _verify(platform)
    assert result.returncode == 1 and "missing" in result.stderr
    assert _verify(platform, "--skip-exports").returncode == 0  # the stored remainder alone is intact
    oldest.write_bytes(content.replace(b'"result":true', b'"result":false', 1))
    result = _verify(platform)
    assert result.returncode == 1 and "was changed" in result.stderr
    oldest.write_bytes(content)
    assert _verify(platform).returncode == 0
