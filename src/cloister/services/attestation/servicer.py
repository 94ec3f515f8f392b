"""Attestation RPCs: decode, endorse, encode."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.serialization import Encoding

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister.attestation.backends import Evidence
from cloister.services.attestation.admission import EndorsementQueue


class AttestationServicer(cgrpc.AttestationServicer):
    def __init__(self, endorsements: EndorsementQueue) -> None:
        self._endorsements = endorsements

    async def Endorse(self, request: cpb.EndorseRequest, context: object) -> cpb.EndorseResponse:
        evidence = Evidence(
            request.tee_backend,
            request.quote,
            request.evidence_signature,
            certificates=request.certificates,
            collateral=request.collateral,
        )
        endorsement = await self._endorsements.endorse(
            evidence, request.public_key, request.service, dt.datetime.now(dt.UTC)
        )
        return cpb.EndorseResponse(
            report=endorsement.report.report,
            signature=endorsement.report.signature,
            certs=list(endorsement.report.certs),
            client_certificate=endorsement.client_certificate.public_bytes(Encoding.DER),
            expires=int(endorsement.expires.timestamp()),
        )
