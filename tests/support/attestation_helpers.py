"""Identities for unit tests, endorsed in process by the same code the attestation service runs."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloister.attestation.certificate import new_key, report_data_for
from cloister.attestation.deployment import Deployment
from cloister.attestation.identity import ServiceIdentity, build_identity, open_backend
from cloister.services.attestation.endorser import Endorser


def make_identity(
    deployment: Deployment, service: str, lifetime: dt.timedelta = dt.timedelta(hours=1)
) -> ServiceIdentity:
    now = dt.datetime.now(dt.UTC)
    key = new_key()
    evidence = open_backend("sim", deployment, service).evidence(report_data_for(key.public_key()))
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    endorsement = Endorser(deployment, lifetime).endorse(evidence, public, service, now)
    client_der = endorsement.client_certificate.public_bytes(serialization.Encoding.DER)
    return build_identity(
        service, key, endorsement.report, client_der, deployment.deployment_ca_pem(), "sim", now, endorsement.expires
    )


def self_signed_certificate(
    key: ec.EllipticCurvePrivateKey, common_name: str, *, ip: str | None = None
) -> x509.Certificate:
    """A certificate no CA signed, valid for the next hour, naming ``ip`` when given (a TLS peer nobody vouches for)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
    )
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False)
    return builder.sign(key, hashes.SHA256())
