"""Attested certificates: a P-256 key whose certificate's first extension carries the report.

The layout follows reference §14.1 (Netscape-comment OID, ``{"report","signature","certs"}``
JSON) so Teaclave's SDK reads it unchanged. Unlike Teaclave's, the subject equals the issuer
and names the service, so a client can pin exactly this certificate as its TLS trust anchor.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from cloister.attestation.report import EndorsedReport
from cloister.errors import AttestationError

NETSCAPE_COMMENT_OID = x509.ObjectIdentifier("2.16.840.1.113730.1.13")
TLS_NAME = "cloister.internal"
"""The DNS name every service certificate carries; clients check it via name override."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def report_data_for(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """X‖Y of the uncompressed point: the 64 bytes a quote binds."""
    point = public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return point[1:]


def build_certificate(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    endorsed: EndorsedReport,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    """A self-signed certificate for ``key`` carrying ``endorsed``."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.UnrecognizedExtension(NETSCAPE_COMMENT_OID, endorsed.to_json_bytes()), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(TLS_NAME),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
    )
    return builder.sign(key, hashes.SHA256())


def endorsed_report_of(cert: x509.Certificate) -> EndorsedReport:
    """The report in the certificate's first extension, as Teaclave's verifiers read it."""
    try:
        first = cert.extensions[0]
    except (IndexError, ValueError, x509.DuplicateExtension):
        raise AttestationError("certificate carries no attestation extension") from None
    if first.oid != NETSCAPE_COMMENT_OID:
        raise AttestationError("certificate's first extension is not the attestation report")
    value = first.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else getattr(value, "value", None)
    if not isinstance(raw, bytes):
        raise AttestationError("attestation extension has no payload")
    return EndorsedReport.from_json_bytes(raw)


def ec_public_key_of(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AttestationError("certificate key is not ECDSA P-256")
    return key
