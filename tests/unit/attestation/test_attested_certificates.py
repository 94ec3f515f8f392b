"""A service's attested certificate verifies, and every kind of forgery is refused."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from attestation_helpers import make_identity
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from cloister.attestation.certificate import build_certificate, endorsed_report_of, new_key
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo, verify_auditor_signatures
from cloister.attestation.report import AttestationPolicy, EndorsedReport, verify_report
from cloister.attestation.verify import PeerVerifier
from cloister.config import SERVICES
from cloister.errors import AttestationError

POLICY = AttestationPolicy()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("attestation"), SERVICES)


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _verifier(deployment: Deployment, policy: AttestationPolicy = POLICY) -> PeerVerifier:
    return PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), policy)


def test_service_certificate_verifies_as_itself_only(deployment: Deployment) -> None:
    identity = make_identity(deployment, "storage")
    der = _der(identity.server_certificate_pem)
    peer = _verifier(deployment).verify(der, ["teaclave_storage_service"])
    assert peer.name == "teaclave_storage_service" and peer.tee_backend == "sim"
    with pytest.raises(AttestationError, match="peer is teaclave_storage_service"):
        _verifier(deployment).verify(der, ["teaclave_management_service"])
    cert = x509.load_pem_x509_certificate(identity.server_certificate_pem)
    payload = json.loads(cert.extensions[0].value.value)  # what Teaclave's SDK reads
    assert set(payload) == {"report", "signature", "certs"}
    client = _der(identity.client_certificate_pem)  # the deployment CA's certificate carries the same report
    assert _verifier(deployment).verify(client, ["teaclave_storage_service"]).name == "teaclave_storage_service"


def _report_of(pem: bytes) -> EndorsedReport:
    return endorsed_report_of(x509.load_pem_x509_certificate(pem))


def _reissued(endorsed: EndorsedReport) -> bytes:
    cert = build_certificate(new_key(), "x", endorsed, dt.datetime.now(dt.UTC), dt.timedelta(hours=1))
    return cert.public_bytes(Encoding.DER)


def test_report_copied_to_another_key_is_refused(deployment: Deployment) -> None:
    stolen = _report_of(make_identity(deployment, "frontend").server_certificate_pem)
    with pytest.raises(AttestationError, match="report data"):
        _verifier(deployment).verify(_reissued(stolen), ["teaclave_frontend_service"])


def test_forged_signature_is_refused(deployment: Deployment) -> None:
    real = _report_of(make_identity(deployment, "frontend").server_certificate_pem)
    forged = EndorsedReport(real.report, bytes(len(real.signature)), real.certs)
    with pytest.raises(AttestationError, match="signature"):
        _verifier(deployment).verify(_reissued(forged), ["teaclave_frontend_service"])


def test_measurement_not_in_enclave_info_is_refused(deployment: Deployment) -> None:
    other = EnclaveInfo.parse(EnclaveInfo.render([EnclaveIdentity("teaclave_frontend_service", bytes(32), bytes(32))]))
    der = _der(make_identity(deployment, "frontend").server_certificate_pem)
    with pytest.raises(AttestationError, match="not in enclave_info"):
        PeerVerifier(deployment.as_root_ca(), other, POLICY).verify(der, ["teaclave_frontend_service"])


def test_other_deployment_and_expiry(deployment: Deployment, tmp_path: Path) -> None:
    other = provision(tmp_path / "other", SERVICES)
    der = _der(make_identity(other, "frontend").server_certificate_pem)
    with pytest.raises(AttestationError, match="chain"):
        _verifier(deployment).verify(der, ["teaclave_frontend_service"])
    mine = _der(make_identity(deployment, "frontend").server_certificate_pem)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=90)
    with pytest.raises(AttestationError, match="old"):
        _verifier(deployment, AttestationPolicy(max_report_age=dt.timedelta(hours=1))).verify(
            mine, ["teaclave_frontend_service"], now=later
        )
    with pytest.raises(AttestationError, match="validity"):
        _verifier(deployment, AttestationPolicy(max_report_age=None)).verify(
            mine, ["teaclave_frontend_service"], now=later
        )


def test_quote_status_policy(deployment: Deployment) -> None:
    der = _der(make_identity(deployment, "frontend").server_certificate_pem)
    with pytest.raises(AttestationError, match="status OK is not accepted"):
        _verifier(deployment, AttestationPolicy(accepted_statuses=frozenset({"SW_HARDENING_NEEDED"}))).verify(
            der, ["teaclave_frontend_service"]
        )


def test_auditor_signatures(deployment: Deployment) -> None:
    raw = deployment.enclave_info().raw
    keys = deployment.auditor_public_keys()
    signatures = deployment.auditor_signatures()
    assert verify_auditor_signatures(raw, signatures, keys, required=1) == ["dev"]
    with pytest.raises(AttestationError, match="does not verify"):
        verify_auditor_signatures(raw + b"\n", signatures, keys, required=1)
    with pytest.raises(AttestationError, match="required"):
        verify_auditor_signatures(raw, [], keys, required=1)
    with pytest.raises(AttestationError, match="2 required"):
        verify_auditor_signatures(raw, signatures * 2, keys, required=2)  # one auditor twice is one auditor
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(AttestationError):
        verify_auditor_signatures(raw, signatures, [("stranger", stranger)], required=1)


@pytest.mark.parametrize("service", [5, "", "x" * 129, ["teaclave_storage_service"]])
def test_a_report_whose_certified_name_is_not_a_name_is_refused(deployment: Deployment, service: object) -> None:
    genuine = _report_of(make_identity(deployment, "storage").server_certificate_pem)
    report = json.loads(genuine.report)
    assert report["cloisterService"] == "teaclave_storage_service"
    body = json.dumps({**report, "cloisterService": service}).encode()
    key, _ = deployment.report_signer()
    signed = EndorsedReport(body, key.sign(body, padding.PKCS1v15(), hashes.SHA256()), genuine.certs)
    with pytest.raises(AttestationError, match="cloisterService is not a service name"):
        verify_report(signed, deployment.as_root_ca(), dt.datetime.now(dt.UTC), POLICY)
