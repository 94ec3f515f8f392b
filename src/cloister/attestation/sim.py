"""The simulated TEE backend: real measurements and reports, with only the hardware root faked."""

from __future__ import annotations

from cloister.attestation.measurement import mr_enclave, mr_signer
from cloister.attestation.quote import QuoteBody

SIMULATED_NOTICE = "TEE backend 'sim': the hardware root of trust is SIMULATED; do not use with real secrets"


class SimulatedBackend:
    """Produces quote bodies for a service, measured over the installed package's code."""

    name = "sim"
    quote_version = 3

    def __init__(self, service: str, signing_public_key_der: bytes) -> None:
        self.service = service
        self.mr_enclave = mr_enclave(service)
        self.mr_signer = mr_signer(signing_public_key_der)

    def quote(self, report_data: bytes) -> QuoteBody:
        if len(report_data) != 64:
            raise ValueError("report data must be 64 bytes")
        return QuoteBody(self.quote_version, self.mr_enclave, self.mr_signer, report_data)
