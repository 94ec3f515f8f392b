"""Without bubblewrap the sandbox refuses to run anything, saying what is missing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from cloister.config import SandboxLimits
from cloister.executors.base import TaskFiles
from cloister.executors.sandbox import host, requirements
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


def test_a_service_that_is_not_root_is_told_it_lacks_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal the execution service starts with when it is not root (run for real, as uid
    65534, by tests/integration/test_execution_sandbox_required.py where the checkout allows)."""
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 65534)
    lacking = requirements.shortfalls()
    assert any(
        reason.startswith("not root: the service runs as uid 65534")
        and "run the execution service as root (uid 0 in its container)" in reason
        for reason in lacking
    ), lacking
