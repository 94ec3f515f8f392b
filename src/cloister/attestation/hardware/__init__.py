"""Verify evidence signed by real TEE hardware and decide on it (layer 2).

One verifier per kind turns evidence into :class:`Claims` at a given time or raises
``AttestationError``: SGX and TDX DCAP quotes (:mod:`.dcap`), AMD SEV-SNP reports (:mod:`.snp`),
AWS Nitro attestation documents (:mod:`.nitro`), and Cloister's own simulated quotes
(:mod:`.simulated`). A :class:`TeePolicy` then says whether the claims are acceptable. Imports
``cloister.errors`` and the rest of ``cloister.attestation`` only.
"""

from cloister.attestation.hardware.claims import PLATFORMS, Claims, TCBStatus
from cloister.attestation.hardware.tee_policy import TeePolicy, Verdict

__all__ = ["PLATFORMS", "Claims", "TCBStatus", "TeePolicy", "Verdict"]
