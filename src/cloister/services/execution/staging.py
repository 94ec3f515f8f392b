"""A task's files: inputs fetched, checked and decrypted before its function runs; outputs encrypted
and delivered after (reference §11.1 steps 2-7, §7.5).

Each task gets a private directory under the work directory (mode 0700), removed when the task
ends however it ends. No task ever sees the work directory, and no path in it is built from a
data name or a URL: files are numbered, and outputs are read back through the descriptors opened
before the function started. An input's registered cmac is checked before a byte of it is
decrypted, and its plaintext exists only once its whole integrity check has passed. Failures
name the file and what went wrong; they never carry file contents or keys. A full work disk fails
the task saying so (its path goes to the service log, not to the participants), and the next
task, once space is freed, stages as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from cloister.crypto.files import decrypt_file, encrypt_file
from cloister.errors import DiskFullError, FileIntegrityError, TransferError, is_disk_full
from cloister.executors import FunctionError, TaskFiles
from cloister.file_agent import FileAgent, url_basename
from cloister.model.tasks import StagedTask

logger = logging.getLogger(__name__)


_TASK_DIRECTORY = re.compile(r"[0-9a-f]{32}")
"""How :meth:`DataPlane.open_task` names a task's directory."""


def prepare_work_dir(path: Path) -> Path:
    """The service's own directory for staged files: nobody else may enter it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def remove_leftovers(work_dir: Path) -> int:
    """Remove the task directories a crashed predecessor left (decrypted inputs among them);
    the number removed. The work directory belongs to one execution process, so at its start
    none of them is in use."""
    removed = 0
    for entry in work_dir.iterdir():
        if _TASK_DIRECTORY.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    if removed:
        logger.warning("removed %d task director%s left by an earlier run", removed, "y" if removed == 1 else "ies")
    return removed


class DataPlane:
    def __init__(self, work_dir: Path, agent: FileAgent) -> None:
        self._work_dir = work_dir
        self._agent = agent
        remove_leftovers(prepare_work_dir(work_dir))

    @contextlib.asynccontextmanager
    async def open_task(self, task: StagedTask) -> AsyncIterator[TaskFiles]:
        """The task's staged inputs and output slots, removed afterwards.

        Raises:
            FunctionError: an input could not be fetched or failed its integrity check.
        """
        root = self._work_dir / secrets.token_hex(16)
        with self._work_disk("the task's files"):
            root.mkdir(mode=0o700)
        files = TaskFiles(root=root)
        try:
            with self._work_disk("the task's files"):
                for directory in ("downloads", "inputs", "outputs", "uploads"):
                    (root / directory).mkdir(mode=0o700)
                for number, name in enumerate(task.output_data):
                    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                    files.outputs[name] = os.open(root / "outputs" / str(number), flags, 0o600)
            await _gather(self._stage_input(task, name, number, files) for number, name in enumerate(task.input_data))
            yield files
        finally:
            files.close()
            await asyncio.to_thread(shutil.rmtree, root, True)

    async def _stage_input(self, task: StagedTask, name: str, number: int, files: TaskFiles) -> None:
        staged = task.input_data[name]
        assert files.root is not None
        download = files.root / "downloads" / str(number)
        plaintext = files.root / "inputs" / str(number)
        try:
            # The download lands in the work directory: its disk being full is this service's.
            with self._work_disk(f"input {name}"):
                basename = url_basename(staged.url)  # what a teaclave-file-128 input is bound to
                await self._agent.download(staged.url, download)
                await asyncio.to_thread(
                    decrypt_file, staged.crypto, download, plaintext, name=basename, expected_cmac=staged.cmac
                )
        except (TransferError, FileIntegrityError) as exc:
            raise FunctionError(f"input {name}: {exc.message}") from exc
        await asyncio.to_thread(download.unlink)
        files.inputs[name] = plaintext

    @contextlib.contextmanager
    def _work_disk(self, what: str) -> Iterator[None]:
        """Turn a write refused on the full work disk into the task's failure, logging where for the operator."""
        try:
            yield
        except (OSError, DiskFullError) as exc:
            if not is_disk_full(exc):
                raise
            try:
                free = f"{shutil.disk_usage(self._work_dir).free} bytes free"
            except OSError:
                free = "free space unknown"
            logger.error("no room for %s in %s (%s): the disk is full", what, self._work_dir, free)
            reason = f"{what}: the execution service is out of disk space; try again once space is freed"
            raise FunctionError(reason) from exc

    async def deliver_outputs(self, task: StagedTask, files: TaskFiles) -> dict[str, bytes]:
        """Encrypt every declared output under its registered key and upload it; the cmacs by name.

        Raises:
            FunctionError: an output was not written, cannot be encrypted or uploaded.
        """
        tags: dict[str, bytes] = {}

        async def deliver(number: int, name: str) -> None:
            target = task.output_data[name]
            if name not in files.created:
                raise FunctionError(f"output {name} was not written by the function")
            assert files.root is not None
            encrypted = files.root / "uploads" / str(number)
            try:
                with self._work_disk(f"output {name}"), files.read_output(name) as plaintext:
                    tags[name] = await asyncio.to_thread(
                        encrypt_file, target.crypto, plaintext, encrypted, name=url_basename(target.url)
                    )
                await self._agent.upload(encrypted, target.url)
            except (TransferError, FileIntegrityError, DiskFullError) as exc:  # a full disk here: the destination's
                raise FunctionError(f"output {name}: {exc.message}") from exc
            finally:
                encrypted.unlink(missing_ok=True)

        await _gather(deliver(number, name) for number, name in enumerate(task.output_data))
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
