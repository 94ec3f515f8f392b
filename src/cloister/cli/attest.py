"""``cloister attest``: connect to an endpoint, verify what it proves, and say so plainly."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from cloister.attestation.enclave_info import EnclaveInfo, verify_auditor_signatures
from cloister.attestation.measurement import enclave_name
from cloister.attestation.report import AttestationPolicy
from cloister.attestation.verify import AttestedCertificate, verify_attested_certificate
from cloister.errors import AttestationError
from cloister.rpc.channel import fetch_certificate


@dataclass(frozen=True)
class Attestation:
    attested: AttestedCertificate
    identity: str | None
    auditors: list[str] | None


def load_certificate(path: Path) -> bytes:
    data = path.read_bytes()
    return ssl.PEM_cert_to_DER_cert(data.decode()) if data.startswith(b"-----BEGIN") else data


def load_root(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def attest(
    certificate_der: bytes,
    root: x509.Certificate,
    policy: AttestationPolicy,
    *,
    service: str | None,
    enclave_info: EnclaveInfo | None,
    auditors: tuple[list[bytes], list] | None,
    now: dt.datetime,
    any_service: bool = False,
) -> Attestation:
    """Verify the report, then (when given) the identity file's signatures and the identity.

    The identity is checked against ``service``, or with ``any_service`` against every identity
    the file lists; with neither, it is not checked and :attr:`Attestation.identity` is None.

    Raises:
        AttestationError: the first check that failed.
    """
    attested = verify_attested_certificate(certificate_der, root, policy, now)
    if service is not None and enclave_info is None:
        raise AttestationError("checking a service's identity needs enclave_info.toml")
    names: list[str] = []
    if enclave_info is not None:
        if service is not None:
            names = [enclave_name(service)]
        elif any_service:
            names = [identity.name for identity in enclave_info.identities()]
    signers = None
    if names and auditors is not None and enclave_info is not None:
        signatures, keys = auditors
        signers = verify_auditor_signatures(enclave_info.raw, signatures, keys, required=1)
    identity = None
    if names and enclave_info is not None:
        identity = enclave_info.identify(attested.report, names).name
    return Attestation(attested, identity, signers)


def fetch(address: str) -> bytes:
    return fetch_certificate(address, None)


def describe(result: Attestation, now: dt.datetime) -> list[str]:
    report = result.attested.report
    cert = result.attested.certificate
    backend = report.tee_backend
    simulated = backend == "sim"
    lines = [
        f"TEE backend        {backend}" + ("  (SIMULATED: no hardware root of trust)" if simulated else ""),
        f"identity           {result.identity or 'not checked (give --service NAME and an enclave_info.toml)'}",
        f"certified as       {report.service or '(the report names no service)'}",
        f"mr_enclave         {report.quote.mr_enclave.hex()}",
        f"mr_signer          {report.quote.mr_signer.hex()}",
        f"quote status       {report.quote_status} (quote version {report.quote.version}, report v{report.version})",
        f"report signed by   {report.signed_by}",
        f"report age         {_age(report.age(now))} (at {report.timestamp.isoformat()})",
        f"certificate valid  {cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()}"
        + ("" if cert.not_valid_before_utc <= now <= cert.not_valid_after_utc else "  (EXPIRED)"),
    ]
    if result.auditors is not None:
        lines.append(f"identity file      signed by {', '.join(result.auditors)}")
    return lines


def _age(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
