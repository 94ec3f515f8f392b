"""The execution process: check the task sandbox, then offer the configured executors to the
scheduler until stopped.

The sandbox template starts first, before the rest of the service is imported. Its start (a
Python of its own, importing the runtimes) and the test task are most of a restart, and they go
on in their own processes while this one imports and gets its identity (:mod:`running`).
"""

from __future__ import annotations

import asyncio
import importlib

from cloister.config import Settings
from cloister.executors.sandbox.host import Sandbox
from cloister.executors.sandbox.requirements import check_full_isolation


async def serve(settings: Settings) -> None:
    sandbox = Sandbox(settings.sandbox, (settings.state_dir, settings.execution_work_dir))
    check = asyncio.create_task(check_full_isolation(sandbox), name="sandbox-check")
    await asyncio.sleep(0)  # the check's first step spawns the template
    running = importlib.import_module("cloister.services.execution.running")
    await running.serve(settings, sandbox, check)
