"""``cloister attest --evidence``: verify a file of hardware evidence offline and judge it by a policy.

The connection-based ``cloister attest`` (``cli/attest.py``) checks Cloister's own certificates;
this checks what a TEE signed (an SGX or TDX quote, an SEV-SNP report, a Nitro document),
with the collateral and certificates given on the command line and the time as a parameter.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cloister.attestation.hardware.claims import Claims
from cloister.attestation.hardware.dcap import verify_sgx, verify_tdx
from cloister.attestation.hardware.evidence_files import read_evidence
from cloister.attestation.hardware.nitro import verify_nitro
from cloister.attestation.hardware.snp import SNPCertificates, load_amd_certificate, pinned_arks, verify_snp
from cloister.attestation.hardware.tee_policy import Verdict, load_tee_policy
from cloister.errors import AttestationError

KINDS = ("sgx", "tdx", "sev-snp", "nitro")
_INTEL_ROOT_NAME = "Intel SGX Root CA"
_MAX_CERTIFICATE_FILE = 1 << 20


@dataclass(frozen=True)
class EvidenceCheck:
    claims: Claims
    verdict: Verdict | None
    """None: no policy was given, so only authenticity and validity were checked."""
    notes: tuple[str, ...] = ()


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time with its offset (``2025-07-01T00:00:00Z``).

    Raises:
        ValueError: not such a time, or no offset.
    """
    moment = dt.datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone offset (end it with Z or +HH:MM)")
    return moment.astimezone(dt.UTC)


def certificates_in(directory: Path) -> list[x509.Certificate]:
    """Every certificate (PEM, several per file allowed, or DER) in ``directory``; other files are ignored."""
    found: list[x509.Certificate] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.stat().st_size > _MAX_CERTIFICATE_FILE:
            continue
        data = path.read_bytes()
        if b"-----BEGIN CERTIFICATE-----" in data:
            for block in data.split(b"-----END CERTIFICATE-----")[:-1]:
                start = block.find(b"-----BEGIN CERTIFICATE-----")
                if start >= 0:
                    found += _load(block[start:] + b"-----END CERTIFICATE-----\n")
        else:
            found += _load(data)
    return found


def _load(data: bytes) -> list[x509.Certificate]:
    try:
        return [load_amd_certificate(data)]
    except ValueError:
        return []


def check_evidence(
    kind: str,
    evidence_path: Path,
    *,
    at: dt.datetime,
    collateral_path: Path | None = None,
    certs_dir: Path | None = None,
    policy_path: Path | None = None,
) -> EvidenceCheck:
    """Verify the evidence in a file (binary, hex or base64) at ``at``, then apply the policy if one is given.

    Raises:
        AttestationError: the evidence does not verify, or what verifying it needs is missing.
        ConfigurationError: the policy file is broken.
        OSError: a file cannot be read.
    """
    policy = load_tee_policy(policy_path) if policy_path is not None else None
    evidence = read_evidence(evidence_path)
    certificates = certificates_in(certs_dir) if certs_dir is not None else []
    notes: list[str] = []
    if kind in ("sgx", "tdx"):
        if collateral_path is None:
            raise AttestationError(f"verifying a {kind.upper()} quote needs its PCS collateral: give --collateral FILE")
        # Intel's root is pinned: a root in --certs (which may come from whoever sent the
        # evidence) must never replace it, so it is ignored and said so.
        for root in (c for c in certificates if _is_intel_root(c)):
            notes.append(f"ignored {root.subject.rfc4514_string()} in {certs_dir}: Intel's root CA is pinned")
        verify = verify_sgx if kind == "sgx" else verify_tdx
        claims = verify(evidence, collateral=collateral_path.read_text(), at=at)
    elif kind == "sev-snp":
        sorted_certificates = SNPCertificates.sort(certificates)
        if not sorted_certificates.vceks:
            raise AttestationError("verifying an SEV-SNP report needs the chip's VCEK: give --certs DIR holding it")
        pinned = [ark.public_bytes(Encoding.DER) for ark in pinned_arks()]
        for ark in sorted_certificates.arks:
            if ark.public_bytes(Encoding.DER) not in pinned:
                notes.append(f"ignored {ark.subject.rfc4514_string()}: not one of the AMD roots Cloister pins")
        claims = _first_vcek(evidence, sorted_certificates, at)
    elif kind == "nitro":
        claims = verify_nitro(evidence, at=at)
    else:
        raise AttestationError(f"unknown evidence kind {kind!r}; known: {', '.join(KINDS)}")
    verdict = policy.evaluate(claims, at) if policy is not None else None
    return EvidenceCheck(claims, verdict, tuple(notes))


def _first_vcek(report: bytes, certificates: SNPCertificates, at: dt.datetime) -> Claims:
    failures = []
    for vcek in certificates.vceks:
        try:
            return verify_snp(report, vcek=vcek, at=at, asks=certificates.asks)
        except AttestationError as exc:
            failures.append(exc.message)
    raise AttestationError("; ".join(failures))


def _is_intel_root(certificate: x509.Certificate) -> bool:
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return bool(names) and names[0].value == _INTEL_ROOT_NAME and certificate.subject == certificate.issuer


def describe(check: EvidenceCheck, at: dt.datetime) -> list[str]:
    lines = [f"verified at        {at.isoformat().replace('+00:00', 'Z')}", *check.claims.describe()]
    lines += [f"note               {note}" for note in check.notes]
    return lines
