"""Evidence of any kind: verify it, and map it into a quote body.

Every kind goes the same way: the platform's verifier (:mod:`.dcap`, :mod:`.snp`, :mod:`.nitro`,
:mod:`.simulated`) turns the evidence into :class:`Claims` at the given time or refuses it, then
the deployment's effective :class:`TeePolicy` decides (at the attestation service). What an
endorsed report carries is Teaclave's 432-byte quote body (reference §14.3), which has room for
two 32-byte measurements only, so each platform's measurements are mapped into it by one fixed
rule (:func:`quote_body_of`). Receipts are checked by the same two steps, offline.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.backends import Evidence
from cloister.attestation.hardware.claims import Claims, TCBStatus
from cloister.attestation.hardware.dcap import verify_sgx, verify_tdx
from cloister.attestation.hardware.nitro import verify_nitro
from cloister.attestation.hardware.simulated import verify_sim
from cloister.attestation.hardware.snp import load_amd_certificate, verify_snp
from cloister.attestation.hardware.tee_policy import TeePolicy
from cloister.attestation.producers.layouts import snp_certificates
from cloister.attestation.quote import QuoteBody
from cloister.errors import AttestationError

__all__ = ["effective_policy", "quote_body_of", "quote_status_of", "verify_evidence"]

HARDWARE_KINDS = ("sgx", "tdx", "sev-snp", "nitro")

_SGX_QUOTE_VERSION = 3
_TDX_QUOTE_VERSION = 4
_ZEROS = bytes(32)

_QUOTE_STATUS = {
    TCBStatus.UP_TO_DATE: "OK",
    TCBStatus.SW_HARDENING_NEEDED: "SW_HARDENING_NEEDED",
    TCBStatus.CONFIGURATION_NEEDED: "CONFIGURATION_NEEDED",
    TCBStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED: "CONFIGURATION_AND_SW_HARDENING_NEEDED",
    TCBStatus.OUT_OF_DATE: "OUT_OF_DATE",
    TCBStatus.OUT_OF_DATE_CONFIGURATION_NEEDED: "OUT_OF_DATE_CONFIGURATION_NEEDED",
    # AMD and AWS rate no TCB: the policy bounded it (TCB levels, measurements) before endorsing.
    TCBStatus.UNRATED: "OK",
}
"""Intel's TCB rating as the IAS-style status of the endorsed report; a revoked TCB has none (never endorsed)."""


def effective_policy(configured: TeePolicy, deployment_backend: str) -> TeePolicy:
    """The policy the attestation service applies in a deployment whose own backend is ``deployment_backend``.

    A ``sim`` deployment is simulated as a whole (and says so at start-up), so its simulated
    evidence is accepted. A hardware deployment never accepts simulated evidence, whatever the
    configured policy says: one service on a simulated TEE would expose every party's data.
    """
    if deployment_backend == "sim":
        return dataclasses.replace(configured, platforms=configured.platforms | {"sim"}, allow_simulated=True)
    return dataclasses.replace(configured, allow_simulated=False)


def verify_evidence(
    evidence: Evidence, *, at: dt.datetime, quoting_public_key: ec.EllipticCurvePublicKey | None = None
) -> Claims:
    """The claims of ``evidence`` (``sim`` or one of :data:`HARDWARE_KINDS`), verified at ``at``.

    Intel's and AMD's roots are the pinned ones: nothing the attester sends can replace them.
    SGX and TDX quotes need their PCS collateral in ``evidence.collateral``; an SEV-SNP report
    needs the VCEK (or VLEK) in the certificate table of ``evidence.certificates``.

    Raises:
        AttestationError: the evidence is of an unknown kind, lacks what verifying it needs, or does not verify.
    """
    kind = evidence.tee_backend
    if kind == "sim":
        if quoting_public_key is None:
            raise AttestationError(
                "simulated evidence is checked with the deployment's quoting key, which was not given"
            )
        return verify_sim(evidence, quoting_public_key=quoting_public_key, at=at)
    if kind in ("sgx", "tdx"):
        if not evidence.collateral:
            raise AttestationError(
                f"{kind.upper()} evidence came without Intel's PCS collateral, so it cannot be verified "
                "(the attesting service must send the collateral for its quote; see docs/tee.md)"
            )
        verify = verify_sgx if kind == "sgx" else verify_tdx
        return verify(evidence.quote, collateral=evidence.collateral, at=at)
    if kind == "sev-snp":
        return _verify_snp(evidence, at)
    if kind == "nitro":
        return verify_nitro(evidence.quote, at=at)
    known = ", ".join(("sim", *HARDWARE_KINDS))
    raise AttestationError(f"unknown kind of evidence {kind!r}; this attestation service verifies {known}")


def _verify_snp(evidence: Evidence, at: dt.datetime) -> Claims:
    if not evidence.certificates:
        raise AttestationError("SEV-SNP evidence came without the host's certificate table, so no VCEK to verify it")
    table = snp_certificates(evidence.certificates)
    asks: list[x509.Certificate] = []
    if "ask" in table:
        try:
            asks.append(load_amd_certificate(table["ask"]))
        except ValueError as exc:
            raise AttestationError(f"the certificate table's ASK: {exc}") from None
    failures = []
    for role in ("vcek", "vlek"):  # the ARK in the table is never used: AMD's roots are pinned
        if role not in table:
            continue
        try:
            endorsement_key = load_amd_certificate(table[role])
        except ValueError as exc:
            failures.append(f"the certificate table's {role.upper()}: {exc}")
            continue
        try:
            return verify_snp(evidence.quote, vcek=endorsement_key, at=at, asks=asks)
        except AttestationError as exc:
            failures.append(exc.message)
    if not failures:
        raise AttestationError("the SEV-SNP certificate table holds no VCEK or VLEK")
    raise AttestationError("; ".join(failures))


def quote_body_of(claims: Claims) -> QuoteBody:
    """The quote body an endorsed report carries for ``claims``, by one rule per platform.

    ======== ============================================= ==============================
    platform ``mr_enclave``                                ``mr_signer``
    ======== ============================================= ==============================
    sgx      MRENCLAVE                                     MRSIGNER
    tdx      SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3) SHA-256(MRSEAM), or zeros
    sev-snp  SHA-256(MEASUREMENT)                          SHA-256(ID_KEY_DIGEST)
    nitro    SHA-256(PCR0 ‖ PCR1 ‖ PCR2)                   SHA-256(PCR8), or zeros
    sim      its mr_enclave                                its mr_signer
    ======== ============================================= ==============================

    "Zeros" is 32 zero bytes, for evidence without that measurement. The report data is the
    claims' (Nitro: ``user_data``), which must be 64 bytes. The version is the quote's (SGX 3,
    TDX 4) and 0 for the others; SGX and sim keep their ISV product id and SVN, the others 0.

    Raises:
        AttestationError: a measurement the rule needs is missing or the report data is not 64 bytes.
    """
    if len(claims.report_data) != 64:
        raise AttestationError(f"the evidence's report data is {len(claims.report_data)} bytes, not 64")
    platform = claims.platform
    if platform in ("sgx", "sim"):
        version = _SGX_QUOTE_VERSION
        mr_enclave, mr_signer = _needed(claims, "mr_enclave"), _needed(claims, "mr_signer")
        return QuoteBody(
            version,
            mr_enclave,
            mr_signer,
            claims.report_data,
            claims.tcb_levels.get("isv_prod_id", 0),
            claims.tcb_levels.get("isv_svn", 0),
        )
    if platform == "tdx":
        measured = b"".join(_needed(claims, name) for name in ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3"))
        return QuoteBody(_TDX_QUOTE_VERSION, _sha256(measured), _hash_or_zeros(claims, "mr_seam"), claims.report_data)
    if platform == "sev-snp":
        return QuoteBody(
            0,
            _sha256(_needed(claims, "measurement")),
            _sha256(_needed(claims, "id_key_digest")),
            claims.report_data,
        )
    if platform == "nitro":
        measured = b"".join(_needed(claims, name) for name in ("pcr0", "pcr1", "pcr2"))
        return QuoteBody(0, _sha256(measured), _hash_or_zeros(claims, "pcr8"), claims.report_data)
    raise AttestationError(f"no quote body rule for platform {platform!r}")


def quote_status_of(claims: Claims) -> str:
    """The endorsed report's ``isvEnclaveQuoteStatus`` for claims the policy accepted.

    Raises:
        AttestationError: the TCB is revoked, which is never endorsed whatever the policy says.
    """
    status = _QUOTE_STATUS.get(claims.tcb_status)
    if status is None:
        raise AttestationError(f"the platform's TCB is {claims.tcb_status.label}: never endorsed")
    return status


def _needed(claims: Claims, name: str) -> bytes:
    value = claims.measurements.get(name)
    if value is None:
        raise AttestationError(f"{claims.platform} evidence without measurement {name!r}")
    if claims.platform in ("sgx", "sim") and len(value) != 32:
        raise AttestationError(f"{name} is {len(value)} bytes, not 32")
    return value


def _hash_or_zeros(claims: Claims, name: str) -> bytes:
    value = claims.measurements.get(name)
    return _ZEROS if value is None else _sha256(value)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
