"""Verifying an attested certificate: report, key binding and identity (§14.4, §14.6)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from cloister.attestation.certificate import ec_public_key_of, endorsed_report_of, report_data_for
from cloister.attestation.enclave_info import EnclaveInfo
from cloister.attestation.report import AttestationPolicy, VerifiedReport, load_der_certificate, verify_report
from cloister.errors import AttestationError


@dataclass(frozen=True)
class AttestedCertificate:
    """A certificate whose report verified and whose key the report binds."""

    certificate: x509.Certificate
    report: VerifiedReport


@dataclass(frozen=True)
class PeerIdentity:
    name: str
    mr_enclave: bytes
    mr_signer: bytes
    tee_backend: str
    quote_status: str
    report_time: dt.datetime
    certificate_expires: dt.datetime


def verify_attested_certificate(
    cert_der: bytes, root: x509.Certificate, policy: AttestationPolicy, now: dt.datetime | None = None
) -> AttestedCertificate:
    """Steps 1 to 6 of §14.4: the report verifies and binds this certificate's key.

    Raises:
        AttestationError: saying which step failed.
    """
    now = now or dt.datetime.now(dt.UTC)
    cert = load_der_certificate(cert_der, "certificate")
    report = verify_report(endorsed_report_of(cert), root, now, policy)
    if report.quote.report_data != report_data_for(ec_public_key_of(cert)):
        raise AttestationError("report data does not match the certificate's key")
    return AttestedCertificate(cert, report)


class PeerVerifier:
    """Checks live peers' certificates against one deployment's root CA and identity file."""

    def __init__(self, as_root: x509.Certificate, enclave_info: EnclaveInfo, policy: AttestationPolicy) -> None:
        self._root = as_root
        self._info = enclave_info
        self._policy = policy
        self._cache: dict[tuple[bytes, tuple[str, ...]], PeerIdentity] = {}

    @property
    def policy(self) -> AttestationPolicy:
        return self._policy

    def verify(self, cert_der: bytes, expected: Iterable[str], now: dt.datetime | None = None) -> PeerIdentity:
        """The peer's identity, if its certificate proves one of the ``expected`` names.

        Raises:
            AttestationError: anything failed; the peer must not be talked to.
        """
        names = tuple(expected)
        now = now or dt.datetime.now(dt.UTC)
        cache_key = (hashlib.sha256(cert_der).digest(), names)
        cached = self._cache.get(cache_key)
        if cached is not None and self._still_fresh(cached, now):
            return cached
        attested = verify_attested_certificate(cert_der, self._root, self._policy, now)
        cert = attested.certificate
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            until = cert.not_valid_after_utc.isoformat()
            raise AttestationError(f"peer certificate is outside its validity period (until {until})")
        identity = self._info.identify(attested.report, names)
        peer = PeerIdentity(
            identity.name,
            identity.mr_enclave,
            identity.mr_signer,
            attested.report.tee_backend,
            attested.report.quote_status,
            attested.report.timestamp,
            cert.not_valid_after_utc,
        )
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[cache_key] = peer
        return peer

    def _still_fresh(self, peer: PeerIdentity, now: dt.datetime) -> bool:
        age_ok = self._policy.max_report_age is None or now - peer.report_time <= self._policy.max_report_age
        return age_ok and now <= peer.certificate_expires
