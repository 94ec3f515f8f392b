"""After a crash, the next execution service removes the task directories (decrypted inputs
included) its predecessor left, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

from cloister.file_agent import FileAgent
from cloister.file_agent.agent import TransferLimits
from cloister.services.execution.staging import DataPlane


def test_a_crashed_runs_task_directories_are_removed_at_start(tmp_path: Path) -> None:
    work = tmp_path / "execution"
    left = work / ("ab" * 16)
    (left / "inputs").mkdir(parents=True)
    (left / "inputs" / "0").write_bytes(b"decrypted secret of another tenant")
    os.chmod(left / "inputs", 0o000)  # however it was left
    other = work / "not-a-task"
    other.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    (work / ("cd" * 16)).symlink_to(outside)  # never followed
    DataPlane(work, FileAgent(tmp_path / "fusion", TransferLimits(1024, 5.0)))
    assert not left.exists()
    assert other.is_dir() and (outside / "keep").read_bytes() == b"keep"
    assert oct(work.stat().st_mode & 0o777) == "0o700"
