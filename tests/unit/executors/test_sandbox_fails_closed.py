"""Without bubblewrap the sandbox refuses to run anything, saying what is missing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from cloister.config import SandboxLimits
from cloister.executors.base import TaskFiles
from cloister.executors.sandbox import host
from cloister.executors.sandbox.host import Sandbox, SandboxUnavailableError
from cloister.model.tasks import StagedTask


def test_no_bubblewrap_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.shutil, "which", lambda name: None)
    sandbox = Sandbox(SandboxLimits(), [tmp_path])
    task = StagedTask(uuid.uuid4(), uuid.uuid4(), "u", "mesapy", "python", "f", {}, b"def entrypoint(a): 1", {}, {})
    files = TaskFiles()

    async def run() -> None:
        with pytest.raises(SandboxUnavailableError, match="bubblewrap"):
            await sandbox.run("python", task, files)

    asyncio.run(run())
