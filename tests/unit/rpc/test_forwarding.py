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
from attestation_helpers import make_identity
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
    MAX_SKEW_SECONDS,
    SIGNATURE_KEY,
    ClaimSigner,
    claim_metadata,
    claimed_ip,
)
from cloister.rpc.runtime import attestation_policy


def _verifier(deployment: Deployment, tmp_path: Path) -> PeerVerifier:
    info, _ = deployment.verified_enclave_info()
    return PeerVerifier(deployment.as_root_ca(), info, attestation_policy(load_settings(state_dir=tmp_path)))


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
    v4 = claimed_ip(signer.metadata("203.0.113.7", "UserLogin"), "UserLogin", verifier)
    assert v4 == bytes(12) + ipaddress.IPv4Address("203.0.113.7").packed  # as the audit log stores IPv4
    v6 = claimed_ip(signer.metadata("[2001:db8::5]", "GetTask"), "GetTask", verifier)
    assert v6 == ipaddress.IPv6Address("2001:db8::5").packed
    mapped = claimed_ip(signer.metadata("::ffff:198.51.100.9", "GetTask"), "GetTask", verifier)
    assert mapped == bytes(12) + ipaddress.IPv4Address("198.51.100.9").packed  # a dual-stack listener's form
    assert claimed_ip(signer.metadata("testclient", "GetTask"), "GetTask", verifier) == bytes(16)  # unknown


def test_a_call_without_a_claim_keeps_its_connections_address(deployment: Deployment, tmp_path: Path) -> None:
    assert claimed_ip((("id", "alice"), ("token", "t")), "GetTask", _verifier(deployment, tmp_path)) is None


def _refused(metadata: object, method: str, verifier: PeerVerifier | None, match: str) -> None:
    with pytest.raises(AttestationError, match=match):
        claimed_ip(metadata, method, verifier)  # type: ignore[arg-type]


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
    _refused({**good, CERTIFICATE_KEY: b"not a certificate"}.items(), "UserLogin", verifier, "failed attestation")
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


def test_a_deployment_that_does_not_list_the_console_trusts_no_claim(console: ServiceIdentity, tmp_path: Path) -> None:
    services_only = provision(tmp_path / "attestation", SERVICES)
    foreign = make_identity(services_only, "console")
    verifier = _verifier(services_only, tmp_path)
    _refused(claim_metadata(foreign, _key(foreign), "10.0.0.1", "UserLogin"), "UserLogin", verifier, "console")


def test_the_signer_follows_a_renewed_identity(deployment: Deployment, tmp_path: Path) -> None:
    verifier = _verifier(deployment, tmp_path)
    current = [make_identity(deployment, "console", dt.timedelta(minutes=30))]
    signer = ClaimSigner(lambda: current[0])
    assert claimed_ip(signer.metadata("10.0.0.1", "GetTask"), "GetTask", verifier) is not None
    current[0] = make_identity(deployment, "console")
    claim = dict(signer.metadata("10.0.0.2", "GetTask"))
    assert claim[CERTIFICATE_KEY] == ssl.PEM_cert_to_DER_cert(current[0].client_certificate_pem.decode())
    assert claimed_ip(claim.items(), "GetTask", verifier) == bytes(12) + ipaddress.IPv4Address("10.0.0.2").packed
