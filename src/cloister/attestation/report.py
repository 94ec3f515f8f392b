"""Endorsed attestation reports: IAS-v4-style JSON signed by a report-signing certificate.

The signer plays the part of Intel's attestation service (or Teaclave's DCAP reference
service); what it signs and how a verifier checks it follow reference §14.2 and §14.4.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from cloister.attestation.quote import QuoteBody
from cloister.errors import AttestationError

ACCEPTED_QUOTE_STATUSES = frozenset(
    {
        "OK",
        "SIGNATURE_INVALID",
        "GROUP_REVOKED",
        "SIGNATURE_REVOKED",
        "KEY_REVOKED",
        "SIGRL_VERSION_MISMATCH",
        "GROUP_OUT_OF_DATE",
        "OUT_OF_DATE",
        "OUT_OF_DATE_CONFIGURATION_NEEDED",
        "CONFIGURATION_NEEDED",
        "SW_HARDENING_NEEDED",
        "CONFIGURATION_AND_SW_HARDENING_NEEDED",
    }
)
"""Every status Teaclave's verifier lets through; deployments should narrow it."""

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


@dataclass(frozen=True)
class EndorsedReport:
    """The ``{"report","signature","certs"}`` triple carried in an attested certificate."""

    report: bytes
    signature: bytes
    certs: tuple[bytes, ...]

    def to_json_bytes(self) -> bytes:
        payload = {
            "report": list(self.report),
            "signature": list(self.signature),
            "certs": [list(c) for c in self.certs],
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    @classmethod
    def from_json_bytes(cls, data: bytes) -> EndorsedReport:
        try:
            payload = json.loads(data)
            return cls(
                bytes(payload["report"]),
                bytes(payload["signature"]),
                tuple(bytes(c) for c in payload["certs"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AttestationError(f"attestation payload is not a valid endorsed report: {exc}") from None


@dataclass(frozen=True)
class VerifiedReport:
    quote: QuoteBody
    quote_status: str
    timestamp: dt.datetime
    tee_backend: str

    def age(self, now: dt.datetime) -> dt.timedelta:
        return now - self.timestamp


class ReportSigner:
    """Signs reports for verified evidence; holds the report-signing key and its chain."""

    def __init__(self, key: rsa.RSAPrivateKey, chain: Sequence[x509.Certificate], tee_backend: str) -> None:
        self._key = key
        self._chain = tuple(c.public_bytes(Encoding.DER) for c in chain)
        self._tee_backend = tee_backend

    def endorse(self, quote: QuoteBody, now: dt.datetime, status: str = "OK") -> EndorsedReport:
        report = {
            "id": secrets.token_hex(16),
            "timestamp": now.astimezone(dt.UTC).replace(tzinfo=None).strftime(_TIMESTAMP_FORMAT),
            "version": 4,
            "isvEnclaveQuoteStatus": status,
            "isvEnclaveQuoteBody": base64.b64encode(quote.to_bytes()).decode(),
            "cloisterTeeBackend": self._tee_backend,
        }
        body = json.dumps(report, separators=(",", ":")).encode()
        signature = self._key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return EndorsedReport(body, signature, self._chain)


def verify_report(
    endorsed: EndorsedReport,
    root: x509.Certificate,
    now: dt.datetime,
    *,
    accepted_statuses: Collection[str] = ACCEPTED_QUOTE_STATUSES,
    max_age: dt.timedelta | None = None,
) -> VerifiedReport:
    """Check the signing chain, the signature and the report fields.

    Raises:
        AttestationError: with what failed; nothing about the report may be trusted then.
    """
    if not endorsed.certs:
        raise AttestationError("endorsed report carries no signing certificate")
    try:
        chain = [x509.load_der_x509_certificate(c) for c in endorsed.certs]
    except ValueError:
        raise AttestationError("report-signing certificate is not valid DER") from None
    verify_chain(chain[0], chain[1:], root, now)
    public_key = chain[0].public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise AttestationError("report-signing certificate does not hold an RSA key")
    try:
        public_key.verify(endorsed.signature, endorsed.report, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise AttestationError("report signature does not verify") from None
    try:
        report = json.loads(endorsed.report)
        version = report["version"]
        status = report["isvEnclaveQuoteStatus"]
        timestamp = dt.datetime.strptime(report["timestamp"], _TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)
        quote = QuoteBody.parse(base64.b64decode(report["isvEnclaveQuoteBody"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise AttestationError(f"report is malformed: {exc}") from None
    if version != 4:
        raise AttestationError(f"report API version {version} is not compatible (need 4)")
    if status not in accepted_statuses:
        raise AttestationError(f"quote status {status} is not accepted")
    if max_age is not None and now - timestamp > max_age:
        raise AttestationError(f"report is {now - timestamp} old, more than the {max_age} allowed")
    return VerifiedReport(quote, status, timestamp, str(report.get("cloisterTeeBackend", "hardware")))


def verify_chain(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], root: x509.Certificate, now: dt.datetime
) -> None:
    """Walk from ``leaf`` up to ``root`` by issuer name, checking signatures and validity."""
    current = leaf
    pool = list(intermediates)
    for _ in range(len(pool) + 1):
        _check_validity(current, now)
        if current.issuer == root.subject:
            try:
                current.verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature):
                break
            _check_validity(root, now)
            return
        issuer = next((c for c in pool if c.subject == current.issuer), None)
        if issuer is None:
            break
        try:
            current.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            break
        pool.remove(issuer)
        current = issuer
    raise AttestationError("report-signing certificate does not chain to the attestation root CA")


def _check_validity(cert: x509.Certificate, now: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AttestationError(f"certificate {cert.subject.rfc4514_string()} is outside its validity period")

