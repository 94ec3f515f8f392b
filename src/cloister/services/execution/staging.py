"""A task's files: inputs fetched, checked and decrypted before its function runs; outputs encrypted
and delivered after (reference §11.1 steps 2-7, §7.5).

Each task gets a private directory under the work directory (mode 0700), removed when the task
ends however it ends. An input's registered cmac is checked before a byte of it is decrypted,
and its plaintext exists only once its whole integrity check has passed. Failures name the file
and what went wrong; they never carry file contents or keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from cloister.crypto.files import decrypt_file, encrypt_file
from cloister.errors import FileIntegrityError, TransferError
from cloister.executors import FunctionError, TaskFiles
from cloister.executors.base import prepare_work_dir
from cloister.file_agent import FileAgent, url_basename
from cloister.model.tasks import StagedTask


class DataPlane:
    def __init__(self, work_dir: Path, agent: FileAgent) -> None:
        self._work_dir = work_dir
        self._agent = agent
        prepare_work_dir(work_dir)

    @contextlib.asynccontextmanager
    async def open_task(self, task: StagedTask) -> AsyncIterator[TaskFiles]:
        """The task's staged inputs and output slots, removed afterwards.

        Raises:
            FunctionError: an input could not be fetched or failed its integrity check.
        """
        # An unguessable name in a directory sandboxed functions cannot list: no task finds another's.
        root = self._work_dir / secrets.token_hex(16)
        root.mkdir(mode=0o700)
        try:
            files = TaskFiles(root, outputs={name: root / "outputs" / name for name in task.output_data})
            (root / "outputs").mkdir()
            (root / "inputs").mkdir()
            await _gather(self._stage_input(task, name, files) for name in task.input_data)
            yield files
        finally:
            await asyncio.to_thread(shutil.rmtree, root, True)

    async def _stage_input(self, task: StagedTask, name: str, files: TaskFiles) -> None:
        staged = task.input_data[name]
        try:
            download = files.root / "downloads" / name / url_basename(staged.url)
            await self._agent.download(staged.url, download)
            plaintext = files.root / "inputs" / name
            await asyncio.to_thread(decrypt_file, staged.crypto, download, plaintext, expected_cmac=staged.cmac)
        except (TransferError, FileIntegrityError) as exc:
            raise FunctionError(f"input {name}: {exc.message}") from exc
        await asyncio.to_thread(download.unlink)
        files.inputs[name] = plaintext

    async def deliver_outputs(self, task: StagedTask, files: TaskFiles) -> dict[str, bytes]:
        """Encrypt every declared output under its registered key and upload it; the cmacs by name.

        Raises:
            FunctionError: an output was not written, cannot be encrypted or uploaded.
        """
        tags: dict[str, bytes] = {}

        async def deliver(name: str) -> None:
            target = task.output_data[name]
            plaintext = files.outputs[name]
            if not plaintext.exists():
                raise FunctionError(f"output {name} was not written by the function")
            try:
                encrypted = files.root / "uploads" / name / url_basename(target.url)
                encrypted.parent.mkdir(parents=True)
                tags[name] = await asyncio.to_thread(
                    encrypt_file, target.crypto, plaintext, encrypted, name=encrypted.name
                )
                await self._agent.upload(encrypted, target.url)
            except (TransferError, FileIntegrityError) as exc:
                raise FunctionError(f"output {name}: {exc.message}") from exc

        await _gather(deliver(name) for name in task.output_data)
        return tags

    async def aclose(self) -> None:
        await self._agent.aclose()


async def _gather(jobs) -> None:
    """Run ``jobs`` concurrently; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    if not tasks:
        return
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
