"""Task receipts: the execution service's runner refuses tasks that differ from their manifest, signs
a receipt for those it runs, and that receipt verifies offline, with the manifest it hashes, and
fails on any changed byte."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from attestation_helpers import make_identity
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.certificate import build_certificate, endorsed_report_of
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo
from cloister.attestation.identity import ServiceIdentity, open_backend
from cloister.attestation.receipts import (
    MAX_RECEIPT_CHARS,
    read_manifest_file,
    read_receipt_text,
    sign_receipt,
    task_report_data,
    verify_receipt,
)
from cloister.attestation.report import AttestationPolicy
from cloister.config import SERVICES
from cloister.errors import AttestationError
from cloister.executors import BuiltinExecutor
from cloister.model.functions import EMPTY_PAYLOAD_SHA256, Function
from cloister.model.ids import ExternalId
from cloister.model.manifest import TaskManifest, manifest_for_task
from cloister.model.tasks import StagedTask, TaskOutputs, TaskResult, TaskState
from cloister.services.execution.attestor import REFUSED_PREFIX, TaskAttestor
from cloister.services.execution.runner import TaskRunner

POLICY = AttestationPolicy()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("attestation"), SERVICES)


@pytest.fixture(scope="module")
def execution(deployment: Deployment) -> ServiceIdentity:
    return make_identity(deployment, "execution")


def _function() -> Function:
    return Function(
        id=uuid.uuid4(),
        name="builtin-echo",
        description="",
        public=True,
        executor_type="builtin",
        payload_sha256=EMPTY_PAYLOAD_SHA256,
        arguments=(),
        inputs=(),
        outputs=(),
        owner="alice",
        user_allowlist=(),
        usage_quota=None,
    )


def _staged(message: str = "hello", *, approve: bool = True) -> StagedTask:
    function = _function()
    task = TaskState(
        task_id=uuid.uuid4(),
        creator="alice",
        function_id=ExternalId("function", function.id),
        function_arguments={"message": message},
        executor="builtin",
        inputs_ownership={},
        outputs_ownership={},
        function_owner="alice",
        participants=frozenset({"alice"}),
    )
    if approve:
        task = replace(task, approvals={"alice": manifest_for_task(task, function).terms_hash})
    return StagedTask.for_task(task, function, "alice", manifest_for_task(task, function).to_bytes())


def _attestor(deployment: Deployment, identity: ServiceIdentity) -> TaskAttestor:
    return TaskAttestor(open_backend("sim", deployment, "execution"), lambda: identity)


def _receipt(deployment: Deployment, identity: ServiceIdentity, outputs: dict[str, bytes] | None = None) -> str:
    return _receipt_and_manifest(deployment, identity, outputs)[0]


def _receipt_and_manifest(
    deployment: Deployment,
    identity: ServiceIdentity,
    outputs: dict[str, bytes] | None = None,
    *,
    message: str = "hello",
    inputs: dict[str, bytes] | None = None,
) -> tuple[str, bytes]:
    attestor = _attestor(deployment, identity)
    staged = _staged(message)
    attested = attestor.begin(staged)
    token = attestor.receipt(attested, TaskResult.ok(TaskOutputs(tags_map=outputs or {})), inputs or {})
    assert staged.manifest is not None
    return token, staged.manifest


def _verify(deployment: Deployment, token: str, **kwargs: object):
    return verify_receipt(token, deployment.as_root_ca(), deployment.enclave_info(), POLICY, **kwargs)  # type: ignore[arg-type]


def test_runner_signs_a_receipt_that_verifies(deployment: Deployment, execution: ServiceIdentity) -> None:
    runner = TaskRunner({"builtin": BuiltinExecutor()}, attestor=_attestor(deployment, execution))
    staged = _staged("hi there")
    result, receipt = asyncio.run(runner.run_with_receipt(staged))
    assert result.outputs is not None and result.outputs.return_value == b"hi there"
    assert receipt is not None
    verified = _verify(deployment, receipt, quoting_key=deployment.sim_quoting_public_key())
    assert verified.task_id == f"task-{staged.task_id}" and verified.status == "Finished"
    assert staged.manifest is not None
    manifest = TaskManifest.from_bytes(staged.manifest)
    assert verified.manifest_hash == manifest.manifest_hash == hashlib.sha256(staged.manifest).digest()
    assert (verified.terms_hash, verified.arguments_sha256) == (manifest.terms_hash, manifest.arguments_sha256)
    assert (verified.function_id, verified.payload_sha256) == (manifest.function_id, manifest.payload_sha256)
    assert verified.manifest is None  # not given: the receipt carries its hash only
    assert verified.signer == "teaclave_execution_service"
    assert verified.ear_status == "warning" and verified.tee_backend == "sim"
    assert verified.evidence_signature_checked
    with_manifest = _verify(deployment, receipt, manifest=staged.manifest)
    assert with_manifest.manifest == manifest and with_manifest.manifest.arguments == {"message": "hi there"}


def test_a_task_with_large_arguments_gets_a_small_receipt_that_verifies(
    deployment: Deployment, execution: ServiceIdentity
) -> None:
    message = "x" * (1024 * 1024)
    token, manifest = _receipt_and_manifest(deployment, execution, message=message)
    assert len(manifest) > 1024 * 1024
    assert len(token) < 16 * 1024 < MAX_RECEIPT_CHARS  # the certificate and the evidence; no arguments
    verified = _verify(deployment, token, manifest=manifest)
    assert verified.manifest is not None and verified.manifest.arguments == {"message": message}


def test_a_manifest_other_than_the_one_hashed_is_refused(deployment: Deployment, execution: ServiceIdentity) -> None:
    token, manifest = _receipt_and_manifest(deployment, execution, message="agreed")
    _, other_task = _receipt_and_manifest(deployment, execution, message="agreed")
    changed_arguments = manifest.replace(b'"agreed"', b'"edited"')
    pretty = json.dumps(json.loads(manifest), indent=1).encode()  # the same manifest, not its bytes
    for wrong in (other_task, changed_arguments, pretty, manifest + b" ", b"", b"\xff" * 10):
        with pytest.raises(AttestationError, match="does not hash to the receipt's manifest_hash"):
            _verify(deployment, token, manifest=wrong)
    # Signed by the attested key over the right hash, but naming inputs and outputs the manifest has not.
    extra_input = _receipt_and_manifest(deployment, execution, inputs={"in": b"\x07" * 16})
    extra_output = _receipt_and_manifest(deployment, execution, {"out": b"\x09" * 16})
    for (token, manifest), refusal in ((extra_input, "input cmacs"), (extra_output, "names outputs")):
        _verify(deployment, token)
        with pytest.raises(AttestationError, match=refusal):
            _verify(deployment, token, manifest=manifest)
    # Signed over an unapproved manifest (the execution service never does so): refused all the same.
    run = _attestor(deployment, execution).begin(_staged())
    unapproved = TaskManifest.from_bytes(_staged(approve=False).manifest or b"")
    evidence = open_backend("sim", deployment, "execution").evidence(
        task_report_data(unapproved.manifest_hash, run.key.public_key())
    )
    forged = sign_receipt(
        key=run.key, certificate_der=run.certificate_der, manifest=unapproved, status="Finished", inputs={},
        outputs={}, evidence=evidence, simulated=True, issued_at=int(time.time()),
    )  # fmt: skip
    _verify(deployment, forged)
    with pytest.raises(AttestationError, match="lacks a participant's approval"):
        _verify(deployment, forged, manifest=unapproved.to_bytes())
    token, manifest = _receipt_and_manifest(deployment, execution, message="agreed")
    assert read_manifest_file(manifest + b"\n") == manifest  # as saved by `receipt get --manifest`
    assert _verify(deployment, token, manifest=read_manifest_file(manifest + b"\n")).manifest is not None


def test_receipt_size_is_capped_when_signing_and_when_checking(
    deployment: Deployment, execution: ServiceIdentity
) -> None:
    attestor = _attestor(deployment, execution)
    attested = attestor.begin(_staged())
    many = {f"output-{n:05}": bytes(16) for n in range(2000)}  # about 100 characters each
    with pytest.raises(ValueError, match=f"over the limit of {MAX_RECEIPT_CHARS}"):
        attestor.receipt(attested, TaskResult.ok(TaskOutputs(tags_map=many)), {})
    token = _receipt(deployment, execution)
    header, payload, signature = token.split(".")
    padded = f"{header}.{payload}{'A' * (MAX_RECEIPT_CHARS - len(token) + 1)}.{signature}"
    with pytest.raises(AttestationError, match=f"longer than {MAX_RECEIPT_CHARS}"):
        _verify(deployment, padded)


def test_receipt_shape_follows_ear(deployment: Deployment, execution: ServiceIdentity) -> None:
    token, _ = _receipt_and_manifest(deployment, execution, {"out": b"\x09" * 16}, inputs={"in": b"\x07" * 16})
    header, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == "ES256"
    assert {"eat_profile", "iat", "ear.verifier-id", "submods"} <= set(claims)
    submod = claims["submods"]["execution"]
    assert submod["ear.status"] == "warning"
    assert set(submod) == {"ear.status", "cloister.task", "cloister.evidence"}  # no manifest in it
    task = submod["cloister.task"]
    assert set(task) == {
        "task_id", "status", "manifest_hash", "terms_hash", "function", "arguments_sha256", "inputs", "outputs"
    }  # fmt: skip
    assert task["inputs"] == {"in": "07" * 16}
    assert task["outputs"] == {"out": "09" * 16}


def test_one_changed_byte_anywhere_fails(deployment: Deployment, execution: ServiceIdentity) -> None:
    # Every refusal must be an AttestationError: a fresh receipt each run once met a change that
    # made cryptography warn instead (see the negative-serial test below, which pins that case).
    token = _receipt(deployment, execution)
    _verify(deployment, token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for position, char in enumerate(token):
        other = "A" if char == "." else alphabet[(alphabet.index(char) + 1) % 64]
        tampered = token[:position] + other + token[position + 1 :]
        with pytest.raises(AttestationError):
            _verify(deployment, tampered)


def test_a_report_signer_whose_serial_is_negative_is_refused_not_raised(
    deployment: Deployment, execution: ServiceIdentity
) -> None:
    """What made the test above flaky, made deterministic. Inside the x5c certificate, the report's
    signing certificate is a JSON array of byte values; one changed character of the token turned
    a digit of its serial's first byte ("102" into "202") and made the serial negative, and the
    verifier let cryptography's CryptographyDeprecationWarning out (an exception under pytest's
    ``filterwarnings = error``) instead of refusing. Signed here with the attested key itself, so
    the damaged certificate gets past the JWS signature to the report's chain."""
    token = _receipt(deployment, execution)
    key = serialization.load_pem_private_key(execution.private_key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    endorsed = endorsed_report_of(x509.load_pem_x509_certificate(execution.server_certificate_pem))
    signer = bytearray(endorsed.certs[0])
    serial = signer.index(b"\xa0\x03\x02\x01\x02\x02") + 7  # after version v3, INTEGER and its length
    signer[serial] |= 0x80
    damaged = replace(endorsed, certs=(bytes(signer), *endorsed.certs[1:]))
    certificate = build_certificate(key, "execution", damaged, dt.datetime.now(dt.UTC), dt.timedelta(hours=1))
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    x5c = [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()]
    forged = jwt.encode(claims, key, algorithm="ES256", headers={"typ": "cloister-receipt+jwt", "x5c": x5c})
    with pytest.raises(AttestationError, match="report-signing certificate's serial number is not positive"):
        _verify(deployment, forged)


def test_receipt_file_allows_one_newline_only() -> None:
    assert read_receipt_text(b"a.b.c\n") == "a.b.c"
    assert read_receipt_text(b"a.b.c \n") == "a.b.c "  # then refused as not canonical
    with pytest.raises(AttestationError):
        read_receipt_text("a.b.cé".encode())


def test_wrong_root_or_wrong_signer_is_refused(
    deployment: Deployment, execution: ServiceIdentity, tmp_path: Path
) -> None:
    token = _receipt(deployment, execution)
    other = provision(tmp_path / "other", SERVICES)
    with pytest.raises(AttestationError):
        verify_receipt(token, other.as_root_ca(), deployment.enclave_info(), POLICY)
    # Signed by another service of the same deployment: its measurement is not execution's.
    storage = make_identity(deployment, "storage")
    attestor = TaskAttestor(open_backend("sim", deployment, "storage"), lambda: storage)
    forged = attestor.receipt(attestor.begin(_staged()), TaskResult.ok(TaskOutputs()), {})
    with pytest.raises(AttestationError, match="teaclave_execution_service"):
        _verify(deployment, forged)
    # An identity file without the execution service's measurement.
    info = EnclaveInfo.parse(EnclaveInfo.render([EnclaveIdentity("teaclave_execution_service", bytes(32), bytes(32))]))
    with pytest.raises(AttestationError):
        verify_receipt(token, deployment.as_root_ca(), info, POLICY)


def test_checked_at_a_later_time_the_report_is_too_old(deployment: Deployment, execution: ServiceIdentity) -> None:
    token = _receipt(deployment, execution)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    with pytest.raises(AttestationError):
        _verify(deployment, token, at=later)


def test_evidence_signature_checked_with_the_quoting_key(
    deployment: Deployment, execution: ServiceIdentity, tmp_path: Path
) -> None:
    token = _receipt(deployment, execution)
    other = provision(tmp_path / "other", SERVICES)
    with pytest.raises(AttestationError, match="simulated quoting key"):
        _verify(deployment, token, quoting_key=other.sim_quoting_public_key())


def test_runner_refuses_a_task_that_differs_from_its_manifest(
    deployment: Deployment, execution: ServiceIdentity
) -> None:
    refused: list[tuple[uuid.UUID, str]] = []

    async def audit(task: StagedTask, reason: str) -> None:
        refused.append((task.task_id, reason))

    runner = TaskRunner({"builtin": BuiltinExecutor()}, attestor=_attestor(deployment, execution), on_refused=audit)
    tampered = replace(_staged("approved"), function_arguments={"message": "changed"})
    result, receipt = asyncio.run(runner.run_with_receipt(tampered))
    assert receipt is None and result.outputs is None
    assert result.failure is not None and result.failure.startswith(REFUSED_PREFIX)
    assert "arguments differ" in result.failure
    assert refused == [(tampered.task_id, result.failure)]

    unapproved = _staged(approve=False)
    result, receipt = asyncio.run(runner.run_with_receipt(unapproved))
    assert receipt is None and "approved no manifest" in (result.failure or "")

    bare = replace(_staged(), manifest=None)
    result, receipt = asyncio.run(runner.run_with_receipt(bare))
    assert receipt is None and "carries no approved manifest" in (result.failure or "")

    not_a_number = replace(_staged(), function_arguments={"message": float("nan")})
    result, receipt = asyncio.run(runner.run_with_receipt(not_a_number))
    assert receipt is None and "cannot be encoded" in (result.failure or "")

    approved = _staged()
    spaced = json.dumps(json.loads(approved.manifest or b""), indent=1).encode()  # same terms, other bytes
    result, receipt = asyncio.run(runner.run_with_receipt(replace(approved, manifest=spaced)))
    assert receipt is None and "not in the canonical encoding" in (result.failure or "")
    assert len(refused) == 5
