"""Evidence from the ``sim`` backend as :class:`Claims`, marked simulated so that a production policy refuses it.

The simulated quoting key stands in for the hardware, so the claims are as trustworthy as
that key file: enough for development, never for real secrets.
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.backends import Evidence
from cloister.attestation.hardware.claims import Claims, TCBStatus, evidence_digest, require_aware
from cloister.attestation.sim import verify_simulated_evidence
from cloister.errors import AttestationError

__all__ = ["verify_sim"]

_ALWAYS = (dt.datetime.min.replace(tzinfo=dt.UTC), dt.datetime.max.replace(tzinfo=dt.UTC))
"""A simulated quote carries no time and its key no certificate: nothing bounds it."""


def verify_sim(evidence: Evidence, *, quoting_public_key: ec.EllipticCurvePublicKey, at: dt.datetime) -> Claims:
    """Claims of simulated evidence, if the deployment's simulated quoting key signed it.

    Raises:
        AttestationError: the evidence is not from the ``sim`` backend or does not verify.
    """
    require_aware(at)
    if evidence.tee_backend != "sim":
        raise AttestationError(f"evidence from backend {evidence.tee_backend!r} is not simulated evidence")
    quote = verify_simulated_evidence(evidence, quoting_public_key)
    return Claims(
        platform="sim",
        measurements={"mr_enclave": quote.mr_enclave, "mr_signer": quote.mr_signer},
        report_data=quote.report_data,
        tcb_status=TCBStatus.UNRATED,
        simulated=True,
        not_before=_ALWAYS[0],
        not_after=_ALWAYS[1],
        evidence_digest=evidence_digest(evidence.quote + evidence.signature),
        tcb_levels={"isv_prod_id": quote.isv_prod_id, "isv_svn": quote.isv_svn},
    )
