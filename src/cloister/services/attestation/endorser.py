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
from cloister.attestation.hardware.evidence import (
    effective_policy,
    quote_body_of,
    quote_status_of,
    verify_evidence,
)
from cloister.attestation.hardware.tee_policy import TeePolicy
from cloister.attestation.measurement import enclave_name
from cloister.attestation.quote import QuoteBody
from cloister.attestation.report import EndorsedReport, ReportSigner
from cloister.errors import AttestationError, InvalidArgumentError

_MAX_NAME = 64


@dataclass(frozen=True)
class Endorsement:
    report: EndorsedReport
    client_certificate: x509.Certificate
    expires: dt.datetime


class Endorser:
    """Verifies evidence under the deployment's TEE policy and endorses the key it binds.

    Args:
        deployment: the deployment's keys (report signer, deployment CA, simulated quoting key).
        lifetime: how long a client certificate is valid.
        tee_policy: the configured ``[tee_policy]``; the default is the production policy.
        tee_backend: the deployment's own backend: ``sim`` accepts simulated evidence, a hardware
            backend refuses it (:func:`effective_policy`).
    """

    def __init__(
        self,
        deployment: Deployment,
        lifetime: dt.timedelta,
        tee_policy: TeePolicy | None = None,
        tee_backend: str = "sim",
    ) -> None:
        signer_key, signer_cert = deployment.report_signer()
        self._signer = ReportSigner(signer_key, [signer_cert], "sim")
        self._ca = deployment.deployment_ca()
        self._quoting_key = deployment.sim_quoting_public_key()
        self._lifetime = lifetime
        self._policy = effective_policy(tee_policy or TeePolicy(), tee_backend)

    def endorse(self, evidence: Evidence, public_key_der: bytes, service: str, now: dt.datetime) -> Endorsement:
        """Endorse ``evidence`` about ``public_key_der``, verified and judged at ``now``.

        The report says which platform signed the evidence (``cloisterTeeBackend``), carries
        its measurements as :func:`quote_body_of` maps them, and names the identity the key is
        certified as (``cloisterService``, the ``teaclave_<service>_service`` the request asks for).

        Raises:
            AttestationError: the evidence does not verify, the policy refuses it (with every
                reason), or it does not bind that key.
            InvalidArgumentError: the request is malformed.
        """
        if not service or len(service) > _MAX_NAME or not (service.isascii() and service.isidentifier()):
            raise InvalidArgumentError("service name must be a short identifier")
        try:
            public_key = serialization.load_der_public_key(public_key_der)
        except ValueError:
            raise InvalidArgumentError("public_key is not a DER SubjectPublicKeyInfo") from None
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
            raise InvalidArgumentError("public_key must be an ECDSA P-256 key")
        claims = verify_evidence(evidence, at=now, quoting_public_key=self._quoting_key)
        verdict = self._policy.evaluate(claims, now)
        if not verdict:
            raise AttestationError(
                f"the TEE policy refuses this {claims.platform} evidence: " + "; ".join(verdict.reasons)
            )
        if claims.report_data != report_data_for(public_key):
            raise AttestationError("the quote's report data does not bind the key to be certified")
        if claims.simulated:  # the signed body as it is, exactly as before hardware evidence was accepted
            quote, status = QuoteBody.parse(evidence.quote), "OK"
        else:
            quote, status = quote_body_of(claims), quote_status_of(claims)
        # The name the service asks for rides in the signed report: peers recognise it only where
        # their enclave_info lists it with this platform and these measurements (docs/tee.md).
        report = self._signer.endorse(quote, now, status, tee_backend=claims.platform, service=enclave_name(service))
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
