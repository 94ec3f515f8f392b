"""A running service's attested identity: its key, its server certificate, its client certificate."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.backends import TEEBackend, check_backend
from cloister.attestation.certificate import build_certificate
from cloister.attestation.deployment import Deployment
from cloister.attestation.measurement import enclave_name
from cloister.attestation.producers import EndorsementSources, open_hardware_backend
from cloister.attestation.report import EndorsedReport
from cloister.attestation.sim import SimulatedBackend


@dataclass(frozen=True)
class ServiceIdentity:
    service: str
    private_key_pem: bytes
    server_certificate_pem: bytes
    """Self-signed and attested: what clients verify and then pin."""
    client_certificate_pem: bytes
    """The same key and report, issued by the deployment CA, for mutual TLS."""
    deployment_ca_pem: bytes
    tee_backend: str
    expires: dt.datetime


def open_backend(
    tee_backend: str,
    deployment: Deployment,
    service: str,
    devices_root: Path = Path("/"),
    sources: EndorsementSources | None = None,
) -> TEEBackend:
    """The configured backend for ``service``; a hardware one fetches collateral and VCEKs from ``sources``.

    Raises:
        ConfigurationError: the backend is unknown, or its hardware or material is missing.
    """
    if tee_backend != "sim":
        return open_hardware_backend(tee_backend, devices_root, sources)
    check_backend(tee_backend)
    return SimulatedBackend(service, deployment.sim_quoting_key(), deployment.platform_signing_public_der())


def build_identity(
    service: str,
    key: ec.EllipticCurvePrivateKey,
    endorsed: EndorsedReport,
    client_certificate_der: bytes,
    deployment_ca_pem: bytes,
    tee_backend: str,
    now: dt.datetime,
    expires: dt.datetime,
) -> ServiceIdentity:
    """Both certificates for ``key``: the server one self-signed, the client one as the CA issued it."""
    pem = serialization.Encoding.PEM
    server_cert = build_certificate(key, enclave_name(service), endorsed, now, expires - now)
    client_cert = x509.load_der_x509_certificate(client_certificate_der)
    return ServiceIdentity(
        service=service,
        private_key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        server_certificate_pem=server_cert.public_bytes(pem),
        client_certificate_pem=client_cert.public_bytes(pem),
        deployment_ca_pem=deployment_ca_pem,
        tee_backend=tee_backend,
        expires=expires,
    )
