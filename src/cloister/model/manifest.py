"""A task's manifest: what its participants approve, in one canonical encoding with one hash.

The manifest has two parts. The *terms* say what will run: the function (id, name, executor,
SHA-256 of its payload), the arguments, every input with its cmac and owners, every output with
its owners, and the participants. Each participant's approval records the SHA-256 of the terms
as they were when they approved (:attr:`TaskManifest.terms_hash`). The *manifest hash* covers
the terms and the approvals together; it is what evidence and receipts bind.

Canonical encoding (:func:`canonical_json`): JSON with keys sorted, no whitespace, non-ASCII
escaped, no NaN or infinity, UTF-8. Byte strings are lower-case hex. Nothing else is hashed.
Where an input's or output's file lives and how it is encrypted is bound by a digest
(``source_sha256``, ``target_sha256``), so a manifest shown to every participant carries no key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloister.model.files import FileCrypto
from cloister.model.functions import executor_name, executor_type_name

if TYPE_CHECKING:
    from cloister.model.functions import Function
    from cloister.model.tasks import StagedTask, TaskState

MANIFEST_VERSION = 1


class ManifestMismatchError(Exception):
    """What is about to run is not what the participants approved; the message says what differs."""


def canonical_json(value: Any) -> bytes:
    """The one encoding that is hashed: sorted keys, no whitespace, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_binding(url: str, crypto: FileCrypto) -> str:
    """SHA-256 (hex) of where a file is and how it is encrypted; the key stays out of the manifest."""
    return _sha256_hex(canonical_json({"url": url, "crypto": crypto.to_json()}))


@dataclass(frozen=True)
class TaskManifest:
    task_id: str
    function_id: str
    function_name: str
    executor: str
    executor_type: str
    payload_sha256: str
    arguments: Mapping[str, Any]
    inputs: Mapping[str, Mapping[str, Any]]
    """Data name → ``{"cmac", "owners", "source_sha256"}``."""
    outputs: Mapping[str, Mapping[str, Any]]
    """Data name → ``{"owners", "target_sha256"}``."""
    participants: tuple[str, ...]
    approvals: Mapping[str, str] = field(default_factory=dict)
    """Participant → the terms hash (hex) they approved."""

    def terms_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "task_id": self.task_id,
            "function": {
                "id": self.function_id,
                "name": self.function_name,
                "executor": self.executor,
                "executor_type": self.executor_type,
                "payload_sha256": self.payload_sha256,
            },
            "arguments": dict(self.arguments),
            "inputs": {name: dict(value) for name, value in self.inputs.items()},
            "outputs": {name: dict(value) for name, value in self.outputs.items()},
            "participants": sorted(self.participants),
        }

    @property
    def terms_hash(self) -> str:
        """SHA-256 (hex) of the canonical terms: what a participant's approval binds."""
        return _sha256_hex(canonical_json(self.terms_json()))

    @property
    def arguments_sha256(self) -> str:
        """SHA-256 (hex) of the canonical arguments: a receipt's digest of them."""
        return _sha256_hex(canonical_json(dict(self.arguments)))

    def to_json(self) -> dict[str, Any]:
        return {"terms": self.terms_json(), "approvals": dict(sorted(self.approvals.items()))}

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def manifest_hash(self) -> bytes:
        """SHA-256 of the canonical manifest (terms and approvals): what evidence and receipts bind."""
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskManifest:
        """Read a manifest.

        Raises:
            ManifestMismatchError: it is not a manifest of this version.
        """
        try:
            terms = data["terms"]
            if terms["version"] != MANIFEST_VERSION:
                raise ManifestMismatchError(f"manifest version {terms['version']!r} is not {MANIFEST_VERSION}")
            function = terms["function"]
            return cls(
                task_id=str(terms["task_id"]),
                function_id=str(function["id"]),
                function_name=str(function["name"]),
                executor=str(function["executor"]),
                executor_type=str(function["executor_type"]),
                payload_sha256=str(function["payload_sha256"]),
                arguments=dict(terms["arguments"]),
                inputs={str(k): dict(v) for k, v in terms["inputs"].items()},
                outputs={str(k): dict(v) for k, v in terms["outputs"].items()},
                participants=tuple(str(p) for p in terms["participants"]),
                approvals={str(k): str(v) for k, v in data["approvals"].items()},
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ManifestMismatchError(f"malformed manifest: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_bytes(cls, raw: bytes) -> TaskManifest:
        try:
            data = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise ManifestMismatchError("manifest is not JSON (or holds NaN or infinity)") from None
        if not isinstance(data, dict):
            raise ManifestMismatchError("manifest is not a JSON object")
        return cls.from_json(data)


def run_view(
    *,
    task_id: str,
    function_id: str,
    function_name: str,
    executor: str,
    executor_type: str,
    payload: bytes,
    arguments: Mapping[str, Any],
    inputs: Mapping[str, tuple[bytes, str, FileCrypto]],
    outputs: Mapping[str, tuple[str, FileCrypto]],
) -> dict[str, Any]:
    """The parts of the terms that what is run determines (the execution service recomputes them).

    ``inputs`` maps a data name to (cmac, url, crypto); ``outputs`` to (url, crypto).
    """
    return {
        "task_id": task_id,
        "function": {
            "id": function_id,
            "name": function_name,
            "executor": executor_name(executor),
            "executor_type": executor_type_name(executor_type),
            "payload_sha256": _sha256_hex(payload),
        },
        "arguments": dict(arguments),
        "inputs": {
            name: {"cmac": cmac.hex(), "source_sha256": file_binding(url, crypto)}
            for name, (cmac, url, crypto) in inputs.items()
        },
        "outputs": {name: {"target_sha256": file_binding(url, crypto)} for name, (url, crypto) in outputs.items()},
    }


def _without_owners(terms: dict[str, Any]) -> dict[str, Any]:
    view = {key: terms[key] for key in ("task_id", "function", "arguments")}
    view["inputs"] = {n: {k: v for k, v in i.items() if k != "owners"} for n, i in terms["inputs"].items()}
    view["outputs"] = {n: {k: v for k, v in o.items() if k != "owners"} for n, o in terms["outputs"].items()}
    return view


def check_manifest(manifest: TaskManifest, running: dict[str, Any]) -> None:
    """Refuse unless ``running`` (:func:`run_view` of what is about to run) is what the manifest
    says and every participant approved exactly these terms.

    Raises:
        ManifestMismatchError: naming the first part that differs or the approval that is missing.
    """
    approved = _without_owners(manifest.terms_json())
    for part in ("task_id", "function", "arguments", "inputs", "outputs"):
        if canonical_json(approved[part]) != canonical_json(running[part]):
            raise ManifestMismatchError(f"the task's {part} differ from those in its manifest")
    if not manifest.participants:
        raise ManifestMismatchError("the manifest names no participant")
    terms_hash = manifest.terms_hash
    for user in sorted(manifest.participants):
        hash_approved = manifest.approvals.get(user)
        if hash_approved is None:
            raise ManifestMismatchError(f"participant {user} approved no manifest of this task")
        if hash_approved != terms_hash:
            raise ManifestMismatchError(f"participant {user} approved different terms than these")


def manifest_for_task(task: TaskState, function: Function) -> TaskManifest:
    """The manifest of ``task`` as stored, to run ``function`` as stored, with its recorded approvals."""
    return TaskManifest(
        task_id=task.external_id,
        function_id=function.external_id,
        function_name=function.name,
        executor=executor_name(task.executor),
        executor_type=executor_type_name(function.executor_type),
        payload_sha256=function.payload_sha256,
        arguments=dict(task.function_arguments),
        inputs={
            name: {
                "cmac": file.cmac.hex(),
                "owners": sorted(task.inputs_ownership.get(name, frozenset())),
                "source_sha256": file_binding(file.url, file.crypto),
            }
            for name, file in task.assigned_inputs.items()
        },
        outputs={
            name: {
                "owners": sorted(task.outputs_ownership.get(name, frozenset())),
                "target_sha256": file_binding(file.url, file.crypto),
            }
            for name, file in task.assigned_outputs.items()
        },
        participants=tuple(sorted(task.participants)),
        approvals=dict(task.approvals),
    )


def run_view_of_staged(staged: StagedTask) -> dict[str, Any]:
    """:func:`run_view` of a staged task, as the execution service is about to run it."""
    return run_view(
        task_id=f"task-{staged.task_id}",
        function_id=f"function-{staged.function_id}",
        function_name=staged.function_name,
        executor=staged.executor,
        executor_type=staged.executor_type,
        payload=staged.function_payload,
        arguments=staged.function_arguments,
        inputs={name: (i.cmac, i.url, i.crypto) for name, i in staged.input_data.items()},
        outputs={name: (o.url, o.crypto) for name, o in staged.output_data.items()},
    )
