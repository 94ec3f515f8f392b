"""Reports produced on real SGX hardware (Teaclave's fixtures) verify, under an explicit policy."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.attestation.report import TEACLAVE_QUOTE_STATUSES, AttestationPolicy
from cloister.attestation.verify import verify_attested_certificate
from cloister.errors import AttestationError

FIXTURES = TEACLAVE_FIXTURES / "attestation"
OLD_REPORTS = AttestationPolicy(
    accepted_statuses=TEACLAVE_QUOTE_STATUSES,
    max_report_age=dt.timedelta(days=365 * 10),
    accepted_versions=frozenset({3, 4}),
)


def _load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _root(name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(_load(name))


def test_epid_report_signed_by_intel() -> None:
    attested = verify_attested_certificate(_load("tls_ra_cert_v3.der"), _root("ias_root_ca_cert.der"), OLD_REPORTS)
    report = attested.report
    assert report.version == 3 and report.quote.version == 2  # EPID quote
    assert report.quote_status == "GROUP_OUT_OF_DATE"
    assert report.signed_by.startswith("CN=Intel SGX Attestation Report Signing,")
    assert report.quote.mr_enclave.hex().startswith("d32b320a1194f86b")
    assert report.quote.mr_signer.hex().startswith("83d719e77deaca14")
    assert report.timestamp == dt.datetime(2020, 2, 14, 21, 28, 25, 813157, tzinfo=dt.UTC)


def test_dcap_report_signed_by_teaclave_reference_service() -> None:
    attested = verify_attested_certificate(_load("tls_ra_cert_v4.der"), _root("dcap_root_ca_cert.der"), OLD_REPORTS)
    report = attested.report
    assert report.version == 4 and report.quote.version == 3  # ECDSA quote
    assert report.quote_status == "OK"
    assert report.quote.mr_enclave.hex().startswith("82bc195bd181ca8e")
    assert report.timestamp.date() == dt.date(2022, 1, 17)


def test_wrong_root_age_status_and_version_are_refused() -> None:
    with pytest.raises(AttestationError, match="chain"):
        verify_attested_certificate(_load("tls_ra_cert_v4.der"), _root("ias_root_ca_cert.der"), OLD_REPORTS)
    with pytest.raises(AttestationError, match="old"):
        verify_attested_certificate(
            _load("tls_ra_cert_v4.der"),
            _root("dcap_root_ca_cert.der"),
            AttestationPolicy(max_report_age=dt.timedelta(days=30)),
        )
    with pytest.raises(AttestationError, match="GROUP_OUT_OF_DATE is not accepted"):
        verify_attested_certificate(
            _load("tls_ra_cert_v3.der"),
            _root("ias_root_ca_cert.der"),
            AttestationPolicy(max_report_age=None, accepted_versions=frozenset({3, 4})),
        )
    with pytest.raises(AttestationError, match="version 3 is not accepted"):
        verify_attested_certificate(
            _load("tls_ra_cert_v3.der"),
            _root("ias_root_ca_cert.der"),
            AttestationPolicy(accepted_statuses=TEACLAVE_QUOTE_STATUSES, max_report_age=None),
        )
