"""Endorsed attestation reports: IAS-v4-style JSON signed by a report-signing certificate.

The signer plays the part of Intel's attestation service (or Teaclave's DCAP reference
service); what it signs and how a verifier checks it follow reference §14.2 and §14.4.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import secrets
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from cloister.attestation.quote import QuoteBody
from cloister.errors import AttestationError

TEACLAVE_QUOTE_STATUSES = frozenset(
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
"""Every status Teaclave's verifier lets through; Cloister accepts only ``OK`` unless configured."""

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
_CLOCK_SKEW = dt.timedelta(minutes=5)
_MAX_SERVICE_NAME = 128


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
            # Teaclave's EPID certificates of 2020 carried one "signing_cert"; later ones "certs".
            certs = payload["certs"] if "certs" in payload else [payload["signing_cert"]]
            return cls(
                bytes(payload["report"]),
                bytes(payload["signature"]),
                tuple(bytes(c) for c in certs),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AttestationError(f"attestation payload is not a valid endorsed report: {exc}") from None


@dataclass(frozen=True)
class VerifiedReport:
    quote: QuoteBody
    quote_status: str
    timestamp: dt.datetime
    tee_backend: str
    signed_by: str
    version: int
    service: str | None = None
    """The identity name the attestation service certified (``cloisterService``); None in reports
    from signers that name none (Intel's IAS, Teaclave's DCAP service)."""

    def age(self, now: dt.datetime) -> dt.timedelta:
        return now - self.timestamp


class ReportSigner:
    """Signs reports for verified evidence; holds the report-signing key and its chain."""

    def __init__(self, key: rsa.RSAPrivateKey, chain: Sequence[x509.Certificate], tee_backend: str) -> None:
        self._key = key
        self._chain = tuple(c.public_bytes(Encoding.DER) for c in chain)
        self._tee_backend = tee_backend

    def endorse(
        self,
        quote: QuoteBody,
        now: dt.datetime,
        status: str = "OK",
        tee_backend: str | None = None,
        service: str | None = None,
    ) -> EndorsedReport:
        """A signed report on ``quote``; ``tee_backend`` names the platform that signed the evidence
        (``cloisterTeeBackend``), by default the one this signer was made for, and ``service`` the
        identity name the key is certified as (``cloisterService``)."""
        report: dict[str, object] = {
            "id": secrets.token_hex(16),
            "timestamp": now.astimezone(dt.UTC).replace(tzinfo=None).strftime(_TIMESTAMP_FORMAT),
            "version": 4,
            "isvEnclaveQuoteStatus": status,
            "isvEnclaveQuoteBody": base64.b64encode(quote.to_bytes()).decode(),
            "cloisterTeeBackend": tee_backend or self._tee_backend,
        }
        if service is not None:
            report["cloisterService"] = service
        body = json.dumps(report, separators=(",", ":")).encode()
        signature = self._key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return EndorsedReport(body, signature, self._chain)


@dataclass(frozen=True)
class AttestationPolicy:
    """What a verifier accepts beyond a valid signature chain."""

    accepted_statuses: frozenset[str] = frozenset({"OK"})
    max_report_age: dt.timedelta | None = dt.timedelta(hours=2)
    accepted_versions: frozenset[int] = frozenset({4})


@contextlib.contextmanager
def nonpositive_serials_refused(what: str) -> Iterator[None]:
    """Certificates parsed inside refuse a serial number that is not positive.

    cryptography warns about one, and will refuse it; so do we (the report signer, the
    deployment CA, IAS, Intel's PCS and AWS all issue positive ones; AMD's zero serials are
    admitted where AMD's certificates are loaded). Left a warning, it escapes as whatever the
    warnings filter makes of it: an exception of cryptography's, not ours, under ``-W error`` or
    pytest's ``filterwarnings = error``.

    Raises:
        AttestationError: ``what`` holds a certificate whose serial number is not positive.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            yield
    except CryptographyDeprecationWarning:
        raise AttestationError(f"{what}'s serial number is not positive") from None


def load_der_certificate(data: bytes, what: str) -> x509.Certificate:
    """A DER certificate from outside, parsed.

    Raises:
        AttestationError: ``what`` is not a valid DER certificate, or its serial number is not positive.
    """
    try:
        with nonpositive_serials_refused(what):
            return x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion):
        raise AttestationError(f"{what} is not a valid DER certificate") from None


def verify_report(
    endorsed: EndorsedReport, root: x509.Certificate, now: dt.datetime, policy: AttestationPolicy
) -> VerifiedReport:
    """Check the signing chain, the signature and the report fields.

    The chain is checked as of the report's timestamp: what matters is that the signer was
    valid when it signed, so an old report stays verifiable after its signer's certificate
    expires; how old a report may be is the policy's ``max_report_age``.

    Raises:
        AttestationError: with what failed; nothing about the report may be trusted then.
    """
    if not endorsed.certs:
        raise AttestationError("endorsed report carries no signing certificate")
    chain = [load_der_certificate(c, "report-signing certificate") for c in endorsed.certs]
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
        timestamp = parse_timestamp(report["timestamp"])
        quote = QuoteBody.parse(base64.b64decode(report["isvEnclaveQuoteBody"], validate=True))
        service = report.get("cloisterService")
    except (ValueError, KeyError, TypeError) as exc:
        raise AttestationError(f"report is malformed: {exc}") from None
    if service is not None and not (isinstance(service, str) and 0 < len(service) <= _MAX_SERVICE_NAME):
        raise AttestationError("report is malformed: cloisterService is not a service name")
    verify_chain(chain[0], chain[1:], root, timestamp)
    if version not in policy.accepted_versions:
        accepted = ", ".join(str(v) for v in sorted(policy.accepted_versions))
        raise AttestationError(f"report API version {version} is not accepted (accepted: {accepted})")
    if status not in policy.accepted_statuses:
        raise AttestationError(f"quote status {status} is not accepted")
    if timestamp > now + _CLOCK_SKEW:
        raise AttestationError(f"report is dated in the future ({timestamp.isoformat()})")
    if policy.max_report_age is not None and now - timestamp > policy.max_report_age:
        raise AttestationError(f"report is {now - timestamp} old, more than the {policy.max_report_age} allowed")
    return VerifiedReport(
        quote,
        status,
        timestamp,
        str(report.get("cloisterTeeBackend") or ("sgx-epid" if quote.version in (1, 2) else "sgx-dcap")),
        chain[0].subject.rfc4514_string(),
        int(version),
        service,
    )


def parse_timestamp(text: str) -> dt.datetime:
    """IAS's ``%Y-%m-%dT%H:%M:%S.%f`` (UTC, no zone); DCAP writes up to nine fractional digits."""
    whole, _, fraction = text.partition(".")
    parsed = dt.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    if fraction:
        if not fraction.isdigit():
            raise ValueError(f"bad timestamp {text!r}")
        parsed += dt.timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return parsed


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
