"""A running service's attested identity: its key, its server certificate, its client certificate."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from cloister.attestation.certificate import build_certificate, new_key, report_data_for
from cloister.attestation.deployment import Deployment
from cloister.attestation.measurement import enclave_name
from cloister.attestation.report import ReportSigner
from cloister.attestation.sim import SimulatedBackend
from cloister.errors import ConfigurationError

CERTIFICATE_LIFETIME = dt.timedelta(days=1)
TEE_BACKENDS = ("sim",)


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


def create_identity(deployment: Deployment, service: str, tee_backend: str) -> ServiceIdentity:
    """Measure this service, have the evidence endorsed and build both certificates.

    Raises:
        ConfigurationError: the backend is unknown or its material is missing.
    """
    if tee_backend not in TEE_BACKENDS:
        raise ConfigurationError(
            f"unknown TEE backend {tee_backend!r}; available: {', '.join(TEE_BACKENDS)}"
        )
    now = dt.datetime.now(dt.UTC)
    backend = SimulatedBackend(service, deployment.platform_signing_public_der())
    key = new_key()
    quote = backend.quote(report_data_for(key.public_key()))
    signer_key, signer_cert = deployment.report_signer()
    endorsed = ReportSigner(signer_key, [signer_cert], backend.name).endorse(quote, now)
    name = enclave_name(service)
    server_cert = build_certificate(key, name, endorsed, now, CERTIFICATE_LIFETIME)
    client_cert = build_certificate(key, name, endorsed, now, CERTIFICATE_LIFETIME, issuer=deployment.deployment_ca())
    pem = serialization.Encoding.PEM
    return ServiceIdentity(
        service=service,
        private_key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        server_certificate_pem=server_cert.public_bytes(pem),
        client_certificate_pem=client_cert.public_bytes(pem),
        deployment_ca_pem=deployment.deployment_ca_pem(),
        tee_backend=backend.name,
    )
