"""A service's attested certificate verifies, and every kind of forgery is refused."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from cloister.attestation.certificate import build_certificate, endorsed_report_of, new_key
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.enclave_info import verify_auditor_signatures
from cloister.attestation.identity import create_identity
from cloister.attestation.report import EndorsedReport
from cloister.attestation.verify import PeerVerifier
from cloister.config import SERVICES
from cloister.errors import AttestationError, ConfigurationError


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("attestation"), SERVICES)


def _der(pem: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _verifier(deployment: Deployment, **kwargs) -> PeerVerifier:
    return PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), **kwargs)


def test_service_certificate_verifies_as_itself_only(deployment: Deployment) -> None:
    identity = create_identity(deployment, "storage", "sim")
    der = _der(identity.server_certificate_pem)
    peer = _verifier(deployment).verify(der, ["teaclave_storage_service"])
    assert peer.name == "teaclave_storage_service" and peer.tee_backend == "sim"
    with pytest.raises(AttestationError, match="peer is teaclave_storage_service"):
        _verifier(deployment).verify(der, ["teaclave_management_service"])
    cert = x509.load_pem_x509_certificate(identity.server_certificate_pem)
    payload = json.loads(cert.extensions[0].value.value)  # what Teaclave's SDK reads
    assert set(payload) == {"report", "signature", "certs"}


def _resigned(deployment: Deployment, endorsed: EndorsedReport) -> bytes:
    key = new_key()
    cert = build_certificate(key, "x", endorsed, dt.datetime.now(dt.UTC), dt.timedelta(hours=1))
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def test_report_copied_to_another_key_is_refused(deployment: Deployment) -> None:
    identity = create_identity(deployment, "frontend", "sim")
    stolen = endorsed_report_of(x509.load_pem_x509_certificate(identity.server_certificate_pem))
    with pytest.raises(AttestationError, match="report data"):
        _verifier(deployment).verify(_resigned(deployment, stolen), ["teaclave_frontend_service"])


def test_forged_signature_is_refused(deployment: Deployment) -> None:
    identity = create_identity(deployment, "frontend", "sim")
    real = endorsed_report_of(x509.load_pem_x509_certificate(identity.server_certificate_pem))
    forged = EndorsedReport(real.report, bytes(len(real.signature)), real.certs)
    with pytest.raises(AttestationError, match="signature"):
        _verifier(deployment).verify(_resigned(deployment, forged), ["teaclave_frontend_service"])


def test_other_deployment_and_expiry(deployment: Deployment, tmp_path: Path) -> None:
    other = provision(tmp_path / "other", SERVICES)
    der = _der(create_identity(other, "frontend", "sim").server_certificate_pem)
    with pytest.raises(AttestationError, match="chain"):
        _verifier(deployment).verify(der, ["teaclave_frontend_service"])
    mine = _der(create_identity(deployment, "frontend", "sim").server_certificate_pem)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    with pytest.raises(AttestationError, match="old"):
        _verifier(deployment, max_report_age=dt.timedelta(hours=1)).verify(
            mine, ["teaclave_frontend_service"], now=later
        )


def test_auditor_signatures(deployment: Deployment) -> None:
    raw = deployment.enclave_info().raw
    keys = deployment.auditor_public_keys()
    signatures = deployment.auditor_signatures()
    verify_auditor_signatures(raw, signatures, keys, required=1)
    with pytest.raises(AttestationError, match="does not verify"):
        verify_auditor_signatures(raw + b"\n", signatures, keys, required=1)
    with pytest.raises(AttestationError, match="required"):
        verify_auditor_signatures(raw, [], keys, required=1)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(AttestationError):
        verify_auditor_signatures(raw, signatures, [stranger], required=1)


def test_unknown_backend_stops_start_up(deployment: Deployment) -> None:
    with pytest.raises(ConfigurationError, match="unknown TEE backend"):
        create_identity(deployment, "storage", "sgx-imaginary")
