"""Service log files: rotated by the [logging] settings and bounded; a full disk costs records, not the service."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tmpfs import mounted_tmpfs

from cloister import logs
from cloister.config import load_settings
from cloister.errors import ConfigurationError


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_rotation_settings_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "cloister.toml"
    config.write_text("[logging]\nmax_bytes = 65536\nbackup_count = 2\n")
    settings = load_settings(config, {"CLOISTER_LOGGING__BACKUP_COUNT": "3"}, state_dir=tmp_path)
    assert (settings.logging.max_bytes, settings.logging.backup_count) == (65536, 3)
    defaults = load_settings(None, {}, state_dir=tmp_path).logging
    assert (defaults.max_bytes, defaults.backup_count) == (10 * 1024**2, 5)


@pytest.mark.parametrize(("key", "value"), [("MAX_BYTES", "100"), ("BACKUP_COUNT", "0")])
def test_rotation_settings_must_bound_the_logs(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(
        ConfigurationError,
        match=rf"\[logging\] {key.lower()} must be at least \d+, not CLOISTER_LOGGING__{key}={value}$",
    ):
        load_settings(None, {f"CLOISTER_LOGGING__{key}": value}, state_dir=tmp_path)


def test_a_service_log_rotates_and_stays_within_its_bound(tmp_path: Path, restore_logging: None) -> None:
    settings = load_settings(
        None, {"CLOISTER_LOGGING__MAX_BYTES": "4096", "CLOISTER_LOGGING__BACKUP_COUNT": "2"}, state_dir=tmp_path
    )
    log_file = tmp_path / "logs" / "storage.log"
    logs.configure("storage", "INFO", log_file, settings.logging)
    logger = logging.getLogger("cloister.test")
    for n in range(2000):
        logger.info("record %d %s", n, "x" * 50)
    files = sorted(log_file.parent.iterdir())
    assert [f.name for f in files] == ["storage.log", "storage.log.1", "storage.log.2"]
    assert all(f.stat().st_size <= 4096 for f in files)
    last = json.loads(log_file.read_text().splitlines()[-1])
    assert last["message"].startswith("record 1999 ")  # the newest records are in the current file


def test_a_log_file_that_is_a_pipe_is_written_and_never_rotated(tmp_path: Path, restore_logging: None) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        settings = load_settings(None, {"CLOISTER_LOGGING__MAX_BYTES": "1024"}, state_dir=tmp_path)
        logs.configure("storage", "INFO", fifo, settings.logging)
        for n in range(20):
            logging.getLogger("cloister.test").info("record %d %s", n, "x" * 100)  # past max_bytes twice over
        logging.getLogger().handlers[-1].flush()
        lines = os.read(reader, 65536).decode().splitlines()
    finally:
        os.close(reader)
    assert [json.loads(line)["message"].split()[1] for line in lines] == [str(n) for n in range(20)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_a_full_disk_drops_records_and_writing_resumes(tmp_path: Path) -> None:
    """In a child process, so that what the handler says on stderr is seen as a service's would be."""
    disk = tmp_path / "disk"
    script = f"""
import logging, os, sys
sys.path.insert(0, {str(Path(__file__).parents[1] / "support")!r})
from pathlib import Path
from tmpfs import fill
from cloister import logs
from cloister.config import LoggingSettings
log_file = Path({str(disk / "logs" / "execution.log")!r})
logs.configure("execution", "INFO", log_file, LoggingSettings(max_bytes=1024 * 1024, backup_count=1))
logger = logging.getLogger("cloister.test")
logger.info("before")
filler = fill(log_file.parent)
for n in range(500):
    logger.info("while full %d %s", n, "y" * 200)
filler.unlink()
logger.info("after")
print("still running")
"""
    with mounted_tmpfs(disk, 1024 * 1024):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "still running"
        assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
        assert done.stderr.count("the disk is full; dropping log records") == 1
        assert "writing again" in done.stderr
        lines = (disk / "logs" / "execution.log").read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]
        messages = [entry["message"] for entry in entries]
        assert messages[0] == "before" and "after" in messages
        assert any(m.endswith("log records were dropped while the disk was full") for m in messages)
        # Every line but one cut short by the full disk is a whole record.
        assert len(lines) - len(entries) <= 1
