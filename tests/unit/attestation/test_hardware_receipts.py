"""Receipts of an execution service on real TEE hardware: the task evidence in them is verified
offline to its vendor's pinned root, as of the receipt's time, and must bind the task.

No test can make hardware evidence for a key of its own, so each receipt here carries a real
fixture (``../shared/fixtures/tee-evidence``) and a certificate endorsed, with the deployment's
report signer, as the attestation service endorses a service on that platform. The furthest a
genuine fixture gets is the binding check: verified, then refused because it was made for
another task and key. Everything that should stop earlier does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tee_stand_ins import EXPIRED_AT, FLIPPED_BYTE, VERIFIES_AT, fixture_evidence

from cloister.attestation.backends import Evidence
from cloister.attestation.certificate import new_key, report_data_for
from cloister.attestation.deployment import Deployment, issue_certificate, provision
from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo
from cloister.attestation.hardware.evidence import quote_body_of, verify_evidence
from cloister.attestation.identity import ServiceIdentity, build_identity
from cloister.attestation.measurement import enclave_name
from cloister.attestation.receipts import MAX_RECEIPT_CHARS, sign_receipt, verify_receipt
from cloister.attestation.report import AttestationPolicy, ReportSigner
from cloister.config import SERVICES
from cloister.errors import AttestationError
from cloister.model.manifest import TaskManifest

KINDS = tuple(VERIFIES_AT)
LIFETIME = dt.timedelta(hours=1)
MANIFEST = TaskManifest(
    task_id=f"task-{uuid.UUID(int=1)}",
    function_id=f"function-{uuid.UUID(int=2)}",
    function_name="builtin-echo",
    executor="builtin",
    executor_type="builtin",
    payload_sha256="0" * 64,
    arguments={"message": "hi"},
    inputs={},
    outputs={},
    participants=("alice",),
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """A deployment made before the fixtures were, so its certificates are valid in their windows."""
    return provision(tmp_path_factory.mktemp("deployment"), SERVICES, now=dt.datetime(2024, 9, 1, tzinfo=dt.UTC))


def _on_hardware(deployment: Deployment, kind: str) -> tuple[ServiceIdentity, EnclaveInfo]:
    """An execution service's identity endorsed as on ``kind`` with the fixture's measurements, as
    of the fixture's window, and an enclave_info listing it there."""
    at = VERIFIES_AT[kind]
    key = new_key()
    claims = verify_evidence(fixture_evidence(kind), at=at)
    body = quote_body_of(dataclasses.replace(claims, report_data=report_data_for(key.public_key())))
    signer_key, signer_cert = deployment.report_signer()
    name = enclave_name("execution")
    report = ReportSigner(signer_key, [signer_cert], "sim").endorse(body, at, "OK", tee_backend=kind, service=name)
    ca_cert, ca_key = deployment.deployment_ca()
    client = issue_certificate(name, key.public_key(), ca_cert, ca_key, at, LIFETIME)
    identity = build_identity(
        "execution",
        key,
        report,
        client.public_bytes(serialization.Encoding.DER),
        deployment.deployment_ca_pem(),
        kind,
        at,
        at + LIFETIME,
    )
    listed = EnclaveIdentity(name, body.mr_enclave, body.mr_signer, platform=kind)
    return identity, EnclaveInfo([listed], b"")


def _receipt(identity: ServiceIdentity, evidence: Evidence, issued_at: dt.datetime) -> str:
    key = serialization.load_pem_private_key(identity.private_key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = x509.load_pem_x509_certificate(identity.server_certificate_pem).public_bytes(serialization.Encoding.DER)
    return sign_receipt(
        key=key,
        certificate_der=der,
        manifest=MANIFEST,
        status="Finished",
        inputs={},
        outputs={},
        evidence=evidence,
        simulated=False,
        issued_at=int(issued_at.timestamp()),
    )


def _verify(deployment: Deployment, info: EnclaveInfo, token: str) -> None:
    verify_receipt(token, deployment.as_root_ca(), info, AttestationPolicy())


@pytest.mark.parametrize("kind", KINDS)
def test_genuine_task_evidence_is_verified_then_refused_for_binding_another_task(
    deployment: Deployment, kind: str
) -> None:
    identity, info = _on_hardware(deployment, kind)
    token = _receipt(identity, fixture_evidence(kind), VERIFIES_AT[kind])
    assert len(token) < MAX_RECEIPT_CHARS  # the collateral rides along, under the cap
    with pytest.raises(AttestationError, match="task evidence does not bind this manifest and signing key"):
        _verify(deployment, info, token)


@pytest.mark.parametrize("kind", KINDS)
def test_task_evidence_that_does_not_verify_is_refused_first(deployment: Deployment, kind: str) -> None:
    identity, info = _on_hardware(deployment, kind)
    evidence = fixture_evidence(kind)
    flipped = bytearray(evidence.quote)
    flipped[FLIPPED_BYTE[kind]] ^= 1
    for broken in (dataclasses.replace(evidence, quote=bytes(flipped)), _without_what_verifying_needs(evidence)):
        if broken is None:
            continue
        with pytest.raises(AttestationError) as refused:
            _verify(deployment, info, _receipt(identity, broken, VERIFIES_AT[kind]))
        assert "does not bind" not in refused.value.message


@pytest.mark.parametrize("kind", KINDS)
def test_task_evidence_is_judged_as_of_the_receipts_time(deployment: Deployment, kind: str) -> None:
    """A receipt issued after the evidence's window: its chain had expired when it was signed."""
    identity, info = _on_hardware(deployment, kind)
    late = EXPIRED_AT[kind]
    token = _receipt(identity, fixture_evidence(kind), late)
    with pytest.raises(AttestationError) as refused:
        verify_receipt(token, deployment.as_root_ca(), info, AttestationPolicy(), at=VERIFIES_AT[kind])
    assert "does not bind" not in refused.value.message


def test_task_evidence_of_another_platform_than_the_certificate_is_refused(deployment: Deployment) -> None:
    identity, info = _on_hardware(deployment, "sgx")
    token = _receipt(identity, fixture_evidence("tdx"), VERIFIES_AT["sgx"])
    with pytest.raises(
        AttestationError, match="task evidence is 'tdx' but the signing certificate was attested on 'sgx'"
    ):
        _verify(deployment, info, token)


def _without_what_verifying_needs(evidence: Evidence) -> Evidence | None:
    if evidence.collateral:
        return dataclasses.replace(evidence, collateral=b"")
    if evidence.certificates:
        return dataclasses.replace(evidence, certificates=b"")
    return None  # a Nitro document carries its own chain
