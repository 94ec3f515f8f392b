"""A task's manifest: canonical, changed by every field, and checked against what is about to run."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace

import pytest

from cloister.model.files import FileCrypto, InputFile, OutputFile
from cloister.model.functions import Function, payload_sha256
from cloister.model.ids import ExternalId
from cloister.model.manifest import (
    ManifestMismatchError,
    TaskManifest,
    canonical_json,
    check_manifest,
    manifest_for_task,
    run_view_of_staged,
)
from cloister.model.tasks import StagedInput, StagedOutput, StagedTask, TaskState

KEY = FileCrypto("aes-gcm-128", bytes(range(16)), bytes(12))


def _function() -> Function:
    return Function(
        id=uuid.UUID(int=7),
        name="builtin-echo",
        description="",
        public=True,
        executor_type="builtin",
        payload_sha256=payload_sha256(b"payload"),
        arguments=(),
        inputs=(),
        outputs=(),
        owner="fo",
        user_allowlist=(),
        usage_quota=None,
    )


def _task() -> TaskState:
    return TaskState(
        task_id=uuid.UUID(int=1),
        creator="alice",
        function_id=ExternalId("function", uuid.UUID(int=7)),
        function_arguments={"message": "hi", "n": 3},
        executor="builtin",
        inputs_ownership={"in": frozenset({"alice"})},
        outputs_ownership={"out": frozenset({"bob"})},
        function_owner="fo",
        participants=frozenset({"alice", "bob", "fo"}),
        assigned_inputs={"in": InputFile("http://x/in", b"\x01" * 16, KEY, frozenset({"alice"}), uuid.UUID(int=2))},
        assigned_outputs={"out": OutputFile("http://x/out", None, KEY, frozenset({"bob"}), uuid.UUID(int=3))},
    )


def _approved(task: TaskState, function: Function) -> TaskState:
    terms = manifest_for_task(task, function).terms_hash
    return replace(task, approvals={user: terms for user in task.participants})


def _staged(task: TaskState, function: Function) -> StagedTask:
    staged = StagedTask.for_task(task, function, task.creator, manifest_for_task(task, function).to_bytes())
    return replace(staged, function_payload=b"payload")  # as the execution service gets it


def test_canonical_encoding_ignores_insertion_order() -> None:
    assert canonical_json({"b": 1, "a": [2, {"d": 1, "c": "é"}]}) == b'{"a":[2,{"c":"\\u00e9","d":1}],"b":1}'
    task = _task()
    reordered = replace(task, function_arguments={"n": 3, "message": "hi"})
    function = _function()
    assert manifest_for_task(task, function).to_bytes() == manifest_for_task(reordered, function).to_bytes()


CHANGES = {
    "arguments": lambda t, f: (replace(t, function_arguments={"message": "hi", "n": 4}), f),
    "new argument": lambda t, f: (replace(t, function_arguments={**t.function_arguments, "x": ""}), f),
    "payload": lambda t, f: (t, replace(f, payload_sha256=payload_sha256(b"payload2"))),
    "function name": lambda t, f: (t, replace(f, name="builtin-other")),
    "function id": lambda t, f: (
        replace(t, function_id=ExternalId("function", uuid.UUID(int=8))),
        replace(f, id=uuid.UUID(int=8)),
    ),
    "executor": lambda t, f: (replace(t, executor="mesapy"), f),
    "input cmac": lambda t, f: (
        replace(t, assigned_inputs={"in": replace(t.assigned_inputs["in"], cmac=b"\x02" * 16)}),
        f,
    ),
    "input url": lambda t, f: (
        replace(t, assigned_inputs={"in": replace(t.assigned_inputs["in"], url="http://y/in")}),
        f,
    ),
    "input owners": lambda t, f: (replace(t, inputs_ownership={"in": frozenset({"mallory"})}), f),
    "output key": lambda t, f: (
        replace(
            t,
            assigned_outputs={
                "out": replace(t.assigned_outputs["out"], crypto=FileCrypto("aes-gcm-128", bytes(16), bytes(12)))
            },
        ),
        f,
    ),
    "output owners": lambda t, f: (replace(t, outputs_ownership={"out": frozenset({"mallory"})}), f),
    "participants": lambda t, f: (replace(t, participants=t.participants | {"mallory"}), f),
    "task id": lambda t, f: (replace(t, task_id=uuid.UUID(int=9)), f),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_field_changes_the_terms_and_the_hash(change: str) -> None:
    task, function = _task(), _function()
    before = manifest_for_task(task, function)
    after = manifest_for_task(*CHANGES[change](task, function))
    assert before.terms_hash != after.terms_hash
    assert before.manifest_hash != after.manifest_hash


def test_approvals_change_the_manifest_hash_not_the_terms() -> None:
    task, function = _task(), _function()
    before = manifest_for_task(task, function)
    after = manifest_for_task(replace(task, approvals={"alice": before.terms_hash}), function)
    assert before.terms_hash == after.terms_hash
    assert before.manifest_hash != after.manifest_hash
    assert TaskManifest.from_bytes(after.to_bytes()) == after


def test_manifest_carries_no_key() -> None:
    raw = manifest_for_task(_task(), _function()).to_bytes()
    assert bytes(range(16)).hex() not in raw.decode()
    assert "[0,1,2,3" not in raw.decode()


def test_approved_task_passes_the_check() -> None:
    task, function = _task(), _function()
    approved = _approved(task, function)
    staged = _staged(approved, function)
    check_manifest(TaskManifest.from_bytes(staged.manifest or b""), run_view_of_staged(staged))


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_after_approval_is_refused(change: str) -> None:
    """The approvals were given to the original terms; a record changed afterwards fails the check,
    whether what runs differs from the manifest or the manifest differs from what was approved."""
    task, function = _task(), _function()
    approved = _approved(task, function)
    changed_task, changed_function = CHANGES[change](approved, function)
    staged = _staged(changed_task, changed_function)
    with pytest.raises(ManifestMismatchError):
        check_manifest(TaskManifest.from_bytes(staged.manifest or b""), run_view_of_staged(staged))


def test_what_runs_must_match_the_manifest() -> None:
    task, function = _task(), _function()
    staged = _staged(_approved(task, function), function)
    manifest = TaskManifest.from_bytes(staged.manifest or b"")
    tampered = replace(staged, function_arguments={"message": "bye", "n": 3})
    with pytest.raises(ManifestMismatchError, match="arguments differ"):
        check_manifest(manifest, run_view_of_staged(tampered))
    other_input = replace(staged, input_data={"in": StagedInput("http://x/in", b"\x03" * 16, KEY)})
    with pytest.raises(ManifestMismatchError, match="inputs differ"):
        check_manifest(manifest, run_view_of_staged(other_input))
    other_output = replace(staged, output_data={"out": StagedOutput("http://evil/out", KEY)})
    with pytest.raises(ManifestMismatchError, match="outputs differ"):
        check_manifest(manifest, run_view_of_staged(other_output))
    with pytest.raises(ManifestMismatchError, match="function differ"):
        check_manifest(manifest, run_view_of_staged(replace(staged, function_payload=b"evil")))


def test_missing_or_stale_approval_is_refused() -> None:
    task, function = _task(), _function()
    terms = manifest_for_task(task, function).terms_hash
    partial = replace(task, approvals={"alice": terms, "bob": terms})
    staged = _staged(partial, function)
    with pytest.raises(ManifestMismatchError, match="participant fo approved no manifest"):
        check_manifest(TaskManifest.from_bytes(staged.manifest or b""), run_view_of_staged(staged))
    stale = replace(task, approvals={"alice": terms, "bob": terms, "fo": "00" * 32})
    staged = _staged(stale, function)
    with pytest.raises(ManifestMismatchError, match="participant fo approved different terms"):
        check_manifest(TaskManifest.from_bytes(staged.manifest or b""), run_view_of_staged(staged))


def test_malformed_manifests_are_refused() -> None:
    for raw in (b"not json", b"[]", b"{}", b'{"terms":{"version":2},"approvals":{}}', b'{"terms":NaN}', b"[" * 100000):
        with pytest.raises(ManifestMismatchError):
            TaskManifest.from_bytes(raw)
    good = json.loads(manifest_for_task(_task(), _function()).to_bytes())
    good["terms"]["inputs"] = {"in": "abc"}  # dict("abc"): a ValueError, not a manifest
    with pytest.raises(ManifestMismatchError):
        TaskManifest.from_bytes(json.dumps(good).encode())


def test_arguments_digest_is_of_the_canonical_arguments() -> None:
    manifest = manifest_for_task(_task(), _function())
    assert manifest.arguments_sha256 == hashlib.sha256(canonical_json(dict(manifest.arguments))).hexdigest()
    changed = replace(manifest, arguments={**manifest.arguments, "extra": 1})
    assert changed.arguments_sha256 != manifest.arguments_sha256


def test_manifest_travels_in_the_queue_element_not_in_teaclave_json() -> None:
    from cloister.model.tasks import StagedElement

    task, function = _task(), _function()
    staged = _staged(_approved(task, function), function)
    assert "manifest" not in staged.to_json()
    element = StagedElement(staged, ("gpu",))
    again = StagedElement.from_json(element.to_json())
    assert again.staged.manifest == staged.manifest
    assert again.staged == staged
