"""A full work disk fails the task being staged with a reason that says so (no path), leaves nothing
behind, and the next task stages once space is freed; a real tmpfs is the work disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from async_helpers import run
from staged_tasks import echo_task
from tmpfs import fill, mounted_tmpfs

from cloister.crypto.files import decrypt_file, encrypt_file
from cloister.executors import FunctionError
from cloister.file_agent import FileAgent
from cloister.file_agent.agent import TransferLimits
from cloister.model.files import FileCrypto
from cloister.model.tasks import StagedInput, StagedOutput, StagedTask
from cloister.services.execution.staging import DataPlane

CRYPTO = FileCrypto("aes-gcm-128", bytes(range(16)), bytes(range(12)))


def _task(inputs: dict[str, StagedInput], outputs: dict[str, StagedOutput]) -> StagedTask:
    return echo_task(executor_type="trusted", input_data=inputs, output_data=outputs)


def _input(fusion: Path, name: str, size: int) -> StagedInput:
    plain = fusion.parent / f"{name}.plain"
    plain.write_bytes(os.urandom(size))
    cmac = encrypt_file(CRYPTO, plain, fusion / name)
    return StagedInput(f"fusion:///TEACLAVE_FUSION_BASE/{name}", cmac, CRYPTO)


def test_a_full_work_disk_fails_the_task_clearly_and_staging_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fusion = tmp_path / "fusion"
    fusion.mkdir()
    small = _input(fusion, "small", 10_000)
    large = _input(fusion, "large", 3 * 1024 * 1024)
    work = tmp_path / "work"
    with mounted_tmpfs(work, 2 * 1024 * 1024):

        async def scenario() -> None:
            plane = DataPlane(work, FileAgent(fusion, TransferLimits(64 * 1024**2, 5.0)))
            try:
                with pytest.raises(FunctionError) as failed:
                    async with plane.open_task(_task({"big": large}, {})):
                        raise AssertionError("a 3 MiB input was staged on a 2 MiB disk")
                assert failed.value.reason == (
                    "input big: the execution service is out of disk space; try again once space is freed"
                )
                assert str(work) not in failed.value.reason
                assert os.listdir(work) == []  # nothing of the task is left

                filler = fill(work)
                with pytest.raises(FunctionError, match=r"^input small: the execution service is out of disk space"):
                    async with plane.open_task(_task({"small": small}, {})):
                        raise AssertionError("staged on a full disk")
                filler.unlink()

                out = StagedOutput("fusion:///TEACLAVE_FUSION_BASE/out", CRYPTO)
                async with plane.open_task(_task({"small": small}, {"out": out})) as files:
                    assert files.inputs["small"].read_bytes() == (fusion.parent / "small.plain").read_bytes()
                    with files.create_output("out") as written:
                        written.write(b"result")
                    await plane.deliver_outputs(_task({"small": small}, {"out": out}), files)
                decrypted = tmp_path / "out.plain"
                decrypt_file(CRYPTO, fusion / "out", decrypted)
                assert decrypted.read_bytes() == b"result"
            finally:
                await plane.aclose()

        run(scenario)
    where = [r.getMessage() for r in caplog.records if "the disk is full" in r.getMessage()]
    assert where and all(str(work) in message for message in where)  # the operator learns where
