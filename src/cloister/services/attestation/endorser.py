"""Checking evidence and endorsing it: a signed report plus a client certificate for mutual TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.backends import Evidence
from cloister.attestation.certificate import NETSCAPE_COMMENT_OID, TLS_NAME, report_data_for
from cloister.attestation.deployment import Deployment, issue_certificate
from cloister.attestation.measurement import enclave_name
from cloister.attestation.report import EndorsedReport, ReportSigner
from cloister.attestation.sim import verify_simulated_evidence
from cloister.errors import AttestationError, InvalidArgumentError

_MAX_NAME = 64


@dataclass(frozen=True)
class Endorsement:
    report: EndorsedReport
    client_certificate: x509.Certificate
    expires: dt.datetime


class Endorser:
    def __init__(self, deployment: Deployment, lifetime: dt.timedelta) -> None:
        signer_key, signer_cert = deployment.report_signer()
        self._signer = ReportSigner(signer_key, [signer_cert], "sim")
        self._ca = deployment.deployment_ca()
        self._quoting_key = deployment.sim_quoting_public_key()
        self._lifetime = lifetime

    def endorse(self, evidence: Evidence, public_key_der: bytes, service: str, now: dt.datetime) -> Endorsement:
        """Endorse ``evidence`` about ``public_key_der``.

        Raises:
            AttestationError: the evidence does not verify or does not bind that key.
            InvalidArgumentError: the request is malformed.
        """
        if evidence.tee_backend != "sim":
            backend = evidence.tee_backend
            raise AttestationError(f"this attestation service verifies 'sim' evidence only, not {backend!r}")
        if not service or len(service) > _MAX_NAME or not (service.isascii() and service.isidentifier()):
            raise InvalidArgumentError("service name must be a short identifier")
        try:
            public_key = serialization.load_der_public_key(public_key_der)
        except ValueError:
            raise InvalidArgumentError("public_key is not a DER SubjectPublicKeyInfo") from None
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
            raise InvalidArgumentError("public_key must be an ECDSA P-256 key")
        quote = verify_simulated_evidence(evidence, self._quoting_key)
        if quote.report_data != report_data_for(public_key):
            raise AttestationError("the quote's report data does not bind the key to be certified")
        report = self._signer.endorse(quote, now)
        ca_cert, ca_key = self._ca
        client_certificate = issue_certificate(
            enclave_name(service),
            public_key,
            ca_cert,
            ca_key,
            now,
            self._lifetime,
            extensions=(
                x509.UnrecognizedExtension(NETSCAPE_COMMENT_OID, report.to_json_bytes()),
                x509.SubjectAlternativeName(
                    [x509.DNSName(TLS_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
            ),
        )
        return Endorsement(report, client_certificate, now + self._lifetime)
