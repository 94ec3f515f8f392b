"""A forwarded client address is taken only as the attested console signed it, for this call, lately.

Identities are endorsed in process by the attestation service's own code; the verifier is the
one a service builds from its deployment.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import time
from pathlib import Path

import pytest
from attestation_helpers import make_identity, self_signed_certificate
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.certificate import new_key
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.identity import ServiceIdentity
from cloister.attestation.verify import PeerVerifier
from cloister.config import MEASURED, SERVICES, load_settings
from cloister.errors import AttestationError
from cloister.rpc.forwarding import (
    ADDRESS_KEY,
    AT_KEY,
    CERTIFICATE_KEY,
    MAX_CERTIFICATE_BYTES,
    MAX_SKEW_SECONDS,
    SIGNATURE_KEY,
    ClaimSigner,
    claim_metadata,
    claimed_ip,
)
from cloister.rpc.runtime import attestation_policy


class _Checks:
    """What a public endpoint checks a claim with: its deployment's verifier and CA."""

    def __init__(self, deployment: Deployment, tmp_path: Path) -> None:
        info, _ = deployment.verified_enclave_info()
        policy = attestation_policy(load_settings(state_dir=tmp_path))
        self.verifier = PeerVerifier(deployment.as_root_ca(), info, policy)
        self.issuer = x509.load_pem_x509_certificate(deployment.deployment_ca_pem())

    def address(self, metadata: object, method: str) -> bytes | None:
        return claimed_ip(metadata, method, self.verifier, self.issuer)  # type: ignore[arg-type]


def _verifier(deployment: Deployment, tmp_path: Path) -> _Checks:
    return _Checks(deployment, tmp_path)


def _key(identity: ServiceIdentity) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(identity.private_key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("forwarding") / "attestation", MEASURED)


@pytest.fixture(scope="module")
def console(deployment: Deployment) -> ServiceIdentity:
    return make_identity(deployment, "console")


def test_the_consoles_claim_names_the_browsers_address(
    deployment: Deployment, console: ServiceIdentity, tmp_path: Path
) -> None:
    verifier = _verifier(deployment, tmp_path)
    signer = ClaimSigner(lambda: console)
    v4 = verifier.address(signer.metadata("203.0.113.7", "UserLogin"), "UserLogin")
    assert v4 == bytes(12) + ipaddress.IPv4Address("203.0.113.7").packed  # as the audit log stores IPv4
    v6 = verifier.address(signer.metadata("[2001:db8::5]", "GetTask"), "GetTask")
    assert v6 == ipaddress.IPv6Address("2001:db8::5").packed
    mapped = verifier.address(signer.metadata("::ffff:198.51.100.9", "GetTask"), "GetTask")
    assert mapped == bytes(12) + ipaddress.IPv4Address("198.51.100.9").packed  # a dual-stack listener's form
    assert verifier.address(signer.metadata("testclient", "GetTask"), "GetTask") == bytes(16)  # unknown


def test_a_call_without_a_claim_keeps_its_connections_address(deployment: Deployment, tmp_path: Path) -> None:
    assert _verifier(deployment, tmp_path).address((("id", "alice"), ("token", "t")), "GetTask") is None


def _refused(metadata: object, method: str, checks: _Checks | None, match: str) -> None:
    with pytest.raises(AttestationError, match=match):
        if checks is None:
            claimed_ip(metadata, method, None, None)  # type: ignore[arg-type]
        else:
            checks.address(metadata, method)


def test_a_claim_is_refused_unless_the_console_signed_it_for_this_call_lately(
    deployment: Deployment, console: ServiceIdentity, tmp_path: Path
) -> None:
    verifier = _verifier(deployment, tmp_path)
    good = dict(claim_metadata(console, _key(console), "203.0.113.7", "UserLogin"))
    _refused(good.items(), "GetTask", verifier, "not signed")  # signed for another method
    _refused({**good, ADDRESS_KEY: "203.0.113.8"}.items(), "UserLogin", verifier, "not signed")
    stale = claim_metadata(console, _key(console), "203.0.113.7", "UserLogin", now=time.time() - MAX_SKEW_SECONDS - 5)
    _refused(stale, "UserLogin", verifier, "signed more than")
    ahead = claim_metadata(console, _key(console), "203.0.113.7", "UserLogin", now=time.time() + MAX_SKEW_SECONDS + 5)
    _refused(ahead, "UserLogin", verifier, "signed more than")
    _refused({**good, AT_KEY: "-5"}.items(), "UserLogin", verifier, "no valid time")
    _refused({**good, ADDRESS_KEY: "alice"}.items(), "UserLogin", verifier, "not an IP address")
    without_signature = [(k, v) for k, v in good.items() if k != SIGNATURE_KEY]
    _refused(without_signature, "UserLogin", verifier, SIGNATURE_KEY)
    _refused([*good.items(), (ADDRESS_KEY, "10.0.0.1")], "UserLogin", verifier, "twice")
    _refused({**good, CERTIFICATE_KEY: b"not a certificate"}.items(), "UserLogin", verifier, "deployment CA")
    _refused(good.items(), "UserLogin", None, "cannot verify")


def test_only_the_consoles_identity_may_forward(
    deployment: Deployment, console: ServiceIdentity, tmp_path: Path
) -> None:
    verifier = _verifier(deployment, tmp_path)
    frontend = make_identity(deployment, "frontend")  # attested, but not the console
    _refused(claim_metadata(frontend, _key(frontend), "10.0.0.1", "UserLogin"), "UserLogin", verifier, "console")
    # The console's certificate with a signature by a key it does not certify.
    borrowed = claim_metadata(console, new_key(), "10.0.0.1", "UserLogin")
    _refused(borrowed, "UserLogin", verifier, "not signed by the forwarder")


def test_a_deployment_that_does_not_list_the_console_trusts_no_claim(
    deployment: Deployment, console: ServiceIdentity, tmp_path: Path
) -> None:
    services_only = provision(tmp_path / "attestation", SERVICES)
    own = make_identity(services_only, "console")
    verifier = _verifier(services_only, tmp_path)
    _refused(claim_metadata(own, _key(own), "10.0.0.1", "UserLogin"), "UserLogin", verifier, "console")
    # Another deployment's console is refused by the certificate's issuer, before its report is read.
    _refused(claim_metadata(console, _key(console), "10.0.0.1", "UserLogin"), "UserLogin", verifier, "deployment CA")


class _ReportNeverRead:
    def verify(self, *_: object) -> None:
        raise AssertionError("the certificate's report was verified")


def test_a_certificate_no_deployment_ca_issued_is_refused_before_its_report_is_verified(
    deployment: Deployment, console: ServiceIdentity, tmp_path: Path
) -> None:
    """An attacker's own certificate may carry a report whose checking is made to cost a lot;
    it is refused on its issuer alone, whatever it carries."""
    key = new_key()
    forged = self_signed_certificate(key, "teaclave_console_service").public_bytes(serialization.Encoding.DER)
    claim = dict(claim_metadata(console, key, "10.0.0.1", "UserLogin"))
    checks = _verifier(deployment, tmp_path)
    checks.verifier = _ReportNeverRead()  # type: ignore[assignment]
    _refused({**claim, CERTIFICATE_KEY: forged}.items(), "UserLogin", checks, "deployment CA issued")
    _refused({**claim, CERTIFICATE_KEY: bytes(MAX_CERTIFICATE_BYTES + 1)}.items(), "UserLogin", checks, "larger")


def test_the_signer_follows_a_renewed_identity(deployment: Deployment, tmp_path: Path) -> None:
    verifier = _verifier(deployment, tmp_path)
    current = [make_identity(deployment, "console", dt.timedelta(minutes=30))]
    signer = ClaimSigner(lambda: current[0])
    assert verifier.address(signer.metadata("10.0.0.1", "GetTask"), "GetTask") is not None
    current[0] = make_identity(deployment, "console")
    claim = dict(signer.metadata("10.0.0.2", "GetTask"))
    assert claim[CERTIFICATE_KEY] == ssl.PEM_cert_to_DER_cert(current[0].client_certificate_pem.decode())
    assert verifier.address(claim.items(), "GetTask") == bytes(12) + ipaddress.IPv4Address("10.0.0.2").packed
