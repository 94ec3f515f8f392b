"""Verifying a peer's attested certificate: report, key binding and identity (§14.4, §14.6)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from cryptography import x509

from cloister.attestation.certificate import ec_public_key_of, endorsed_report_of, report_data_for
from cloister.attestation.enclave_info import EnclaveInfo
from cloister.attestation.report import ACCEPTED_QUOTE_STATUSES, verify_report
from cloister.errors import AttestationError


@dataclass(frozen=True)
class PeerIdentity:
    name: str
    mr_enclave: bytes
    mr_signer: bytes
    tee_backend: str
    quote_status: str
    report_time: dt.datetime


class PeerVerifier:
    """Checks certificates against one deployment's root CA and identity file."""

    def __init__(
        self,
        as_root: x509.Certificate,
        enclave_info: EnclaveInfo,
        *,
        accepted_statuses: Collection[str] = ACCEPTED_QUOTE_STATUSES,
        max_report_age: dt.timedelta | None = None,
    ) -> None:
        self._root = as_root
        self._info = enclave_info
        self._statuses = accepted_statuses
        self._max_age = max_report_age
        self._cache: dict[tuple[bytes, tuple[str, ...]], PeerIdentity] = {}

    def verify(self, cert_der: bytes, expected: Iterable[str], now: dt.datetime | None = None) -> PeerIdentity:
        """The peer's identity, if its certificate proves one of the ``expected`` names.

        Raises:
            AttestationError: anything failed; the peer must not be talked to.
        """
        names = tuple(expected)
        cache_key = (hashlib.sha256(cert_der).digest(), names)
        now = now or dt.datetime.now(dt.UTC)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise AttestationError("peer certificate is not valid DER") from None
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise AttestationError("peer certificate is outside its validity period")
        report = verify_report(
            endorsed_report_of(cert), self._root, now, accepted_statuses=self._statuses, max_age=self._max_age
        )
        if report.quote.report_data != report_data_for(ec_public_key_of(cert)):
            raise AttestationError("report data does not match the certificate's key")
        identity = self._info.match(report.quote.mr_enclave, report.quote.mr_signer, names)
        peer = PeerIdentity(
            identity.name,
            identity.mr_enclave,
            identity.mr_signer,
            report.tee_backend,
            report.quote_status,
            report.timestamp,
        )
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[cache_key] = peer
        return peer
