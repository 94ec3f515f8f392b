"""Receipts and approved manifests end to end: a task's receipt verifies offline with the CLI, with
the manifest served next to it, and fails after one byte of either is changed; a task with a
megabyte of arguments gets a small receipt all the same; a task whose arguments an insider changes
in storage after approval is refused by the execution service, does not run, and the refusal is
audited."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import admin, audit_entries, login

from cloister import Client, Credentials, TaskStatus, Trust
from cloister.crypto.sealing import Sealer
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform


def _cloister(platform: RunningPlatform, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    env["CLOISTER_ADMIN_PASSWORD"] = platform.admin_password
    command = [sys.executable, "-m", "cloister", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_receipt_verifies_with_the_cli_and_fails_after_one_changed_byte(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    task_id = root.frontend.create_task(function_id, {"message": "receipted"}, "builtin")
    root.frontend.invoke_task(task_id)
    assert root.frontend.get_task_result(task_id) == b"receipted"

    receipt, manifest = tmp_path / "receipt.jws", tmp_path / "manifest.json"
    fetched = _cloister(
        platform, "receipt", "get", task_id, "--state-dir", platform.state_dir, "-o", receipt, "--manifest", manifest
    )
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(manifest.read_bytes())["terms"]["arguments"] == {"message": "receipted"}
    verified = _cloister(platform, "receipt", "verify", receipt, "--state-dir", platform.state_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"task:           {task_id} (Finished)" in verified.stdout
    assert f"function:       {function_id}\n" in verified.stdout
    assert "manifest:       not given" in verified.stdout
    assert "signed by:      teaclave_execution_service (sim" in verified.stdout
    assert "task evidence:  signature checked" in verified.stdout
    assert verified.stdout.rstrip().endswith("VERIFIED")
    # With the published trust files only, as a participant elsewhere would check it, and the manifest.
    published = _cloister(
        platform, "receipt", "verify", receipt, "--as-root-ca", platform.as_root_ca,
        "--enclave-info", platform.enclave_info, "--state-dir", tmp_path / "nowhere", "--manifest", manifest,
    )  # fmt: skip
    assert published.returncode == 0, published.stdout + published.stderr
    assert f"function:       {function_id} (builtin-echo)" in published.stdout
    assert f"participants:   {platform.admin_user}" in published.stdout

    changed_manifest = tmp_path / "changed-manifest.json"
    changed_manifest.write_bytes(manifest.read_bytes().replace(b'"receipted"', b'"Receipted"'))
    refused = _cloister(
        platform, "receipt", "verify", receipt, "--state-dir", platform.state_dir, "--manifest", changed_manifest
    )
    assert refused.returncode == 1, refused.stdout
    assert refused.stdout.startswith("NOT VERIFIED: the manifest does not hash to the receipt's manifest_hash")

    data = bytearray(receipt.read_bytes())
    for position in (10, len(data) // 2, len(data) - 5):  # header, payload, signature
        tampered = bytearray(data)
        tampered[position] = ord("A") if tampered[position] != ord("A") else ord("B")
        changed = tmp_path / f"changed-{position}.jws"
        changed.write_bytes(bytes(tampered))
        refused = _cloister(platform, "receipt", "verify", changed, "--state-dir", platform.state_dir)
        assert refused.returncode == 1, refused.stdout
        assert refused.stdout.startswith("NOT VERIFIED: "), refused.stdout


def test_a_task_with_a_megabyte_of_arguments_gets_a_receipt_that_verifies(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    message = "m" * (1024 * 1024)
    task_id = root.frontend.create_task(function_id, {"message": message}, "builtin")
    root.frontend.invoke_task(task_id)
    assert root.frontend.get_task_result(task_id) == message.encode()

    receipt, manifest = tmp_path / "receipt.jws", tmp_path / "manifest.json"
    fetched = _cloister(
        platform, "receipt", "get", task_id, "--state-dir", platform.state_dir, "-o", receipt, "--manifest", manifest
    )
    assert fetched.returncode == 0, fetched.stderr
    assert receipt.stat().st_size < 64 * 1024 < 1024 * 1024 < manifest.stat().st_size
    verified = _cloister(
        platform, "receipt", "verify", receipt, "--state-dir", platform.state_dir, "--manifest", manifest
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"task:           {task_id} (Finished)" in verified.stdout
    assert verified.stdout.rstrip().endswith("VERIFIED")


def test_sdk_result_carries_a_receipt_that_verifies(platform: RunningPlatform) -> None:
    trust = Trust.from_files(platform.as_root_ca, platform.enclave_info)
    credentials = Credentials(platform.admin_user, platform.admin_password)
    address = platform.authentication_address
    with Client.connect(
        platform.frontend_address, trust=trust, credentials=credentials, authentication=address
    ) as client:
        function = client.functions.register("builtin-echo", executor="builtin", arguments=["message"])
        task = client.tasks.create(function, {"message": "via the sdk"})
        task.invoke()
        result = task.result(timeout=60)
        verified = result.receipt.verify(trust)
    assert result.return_value == b"via the sdk"
    assert verified.task_id == task.id and verified.status == "Finished"
    assert verified.manifest is not None  # served with the receipt, checked against its hash
    assert verified.manifest.arguments == {"message": "via the sdk"}
    assert result.receipt.manifest is not None and len(result.receipt.token) < 64 * 1024


def _rewrite_task(platform: RunningPlatform, task_id: str, change) -> None:
    """An insider with the storage key rewrites the stored task record directly in the database."""
    sealer = Sealer((platform.state_dir / "storage" / "storage.key").read_bytes())
    db = sqlite3.connect(platform.state_dir / "storage" / "cloister.db")
    key = task_id.encode()
    (value,) = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    record = json.loads(sealer.unseal(value, key))
    change(record)
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (sealer.seal(json.dumps(record).encode(), key), key))
    db.commit()
    db.close()


def test_arguments_changed_in_storage_after_approval_do_not_run(platform: RunningPlatform) -> None:
    root = admin(platform)
    root.auth.user_register("owner_r", "owner-password", "FunctionOwner", "")
    root.auth.user_register("data_r", "data-password", "DataOwner", "bank_r")
    owner = login(platform, "owner_r", "owner-password")
    user = login(platform, "data_r", "data-password")
    function_id = owner.frontend.register_function(
        "builtin-echo",
        "private echo",
        "builtin",
        public=False,
        arguments=[FunctionArgument("message")],
        user_allowlist=["bank_r"],
    )
    task_id = user.frontend.create_task(function_id, {"message": "what we agreed"}, "builtin")
    user.frontend.approve_task(task_id)
    owner.frontend.approve_task(task_id)
    assert user.frontend.get_task(task_id)["status"] == TaskStatus.APPROVED

    def tamper(record: dict) -> None:
        record["function_arguments"]["inner"]["message"] = "what the insider wants"

    _rewrite_task(platform, task_id, tamper)
    user.frontend.invoke_task(task_id)
    task = user.frontend.wait_task(task_id, timeout=60)
    assert task.status == TaskStatus.FAILED
    reason = task.result.Err.reason
    assert "does not match what its participants approved" in reason, reason
    assert "approved different terms" in reason  # the staged task matches the record, not the approvals
    assert not task.result.HasField("Ok")
    receipt = _cloister(platform, "receipt", "get", task_id, "--state-dir", platform.state_dir)
    assert receipt.returncode == 1 and "no receipt" in receipt.stderr  # nothing ran, nothing was signed
    refusals = audit_entries(admin(platform), f'message:"refused to run {task_id}"', 1)
    assert len(refusals) == 1 and refusals[0]["result"] is False
