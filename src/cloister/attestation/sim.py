"""The simulated TEE backend: real measurements, quotes and signatures; only the hardware is faked.

A simulated quoting key (in the deployment's state directory) stands in for the CPU's
attestation key: it signs each quote, and the attestation service checks that signature
before endorsing anything, as Intel's service checks a real quote.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.backends import SIMULATED_NOTICE, Evidence, TEEBackend
from cloister.attestation.measurement import mr_enclave, mr_signer
from cloister.attestation.quote import QuoteBody
from cloister.errors import AttestationError

__all__ = ["SIMULATED_NOTICE", "SimulatedBackend", "verify_simulated_evidence"]


class SimulatedBackend(TEEBackend):
    """Quotes for one service, measured over the code it runs."""

    name = "sim"
    simulated = True
    quote_version = 3

    def __init__(self, service: str, quoting_key: ec.EllipticCurvePrivateKey, signing_public_key_der: bytes) -> None:
        self.service = service
        self.mr_enclave = mr_enclave(service)
        self.mr_signer = mr_signer(signing_public_key_der)
        self._quoting_key = quoting_key

    def quote(self, report_data: bytes) -> QuoteBody:
        if len(report_data) != 64:
            raise ValueError("report data must be 64 bytes")
        return QuoteBody(self.quote_version, self.mr_enclave, self.mr_signer, report_data)

    def evidence(self, report_data: bytes) -> Evidence:
        body = self.quote(report_data).to_bytes()
        return Evidence(self.name, body, self._quoting_key.sign(body, ec.ECDSA(hashes.SHA256())))


def verify_simulated_evidence(evidence: Evidence, quoting_public_key: ec.EllipticCurvePublicKey) -> QuoteBody:
    """The quote, if the simulated quoting key signed it.

    Raises:
        AttestationError: the signature does not verify or the quote is malformed.
    """
    try:
        quoting_public_key.verify(evidence.signature, evidence.quote, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AttestationError("evidence signature does not verify under the simulated quoting key") from None
    return QuoteBody.parse(evidence.quote)
