"""A simulated deployment endorses evidence the simulated quoting key signed, about the key it names."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.backends import Evidence, check_backend
from cloister.attestation.certificate import new_key, report_data_for
from cloister.attestation.deployment import provision
from cloister.attestation.identity import open_backend
from cloister.attestation.sim import SimulatedBackend
from cloister.config import SERVICES
from cloister.errors import AttestationError, ConfigurationError, InvalidArgumentError
from cloister.services.attestation.endorser import Endorser

NOW = dt.datetime.now(dt.UTC)


def _public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_endorses_genuine_evidence_and_refuses_the_rest(tmp_path: Path) -> None:
    deployment = provision(tmp_path, SERVICES)
    endorser = Endorser(deployment, dt.timedelta(hours=1))
    backend = open_backend("sim", deployment, "storage")
    key = new_key()
    evidence = backend.evidence(report_data_for(key.public_key()))
    endorsement = endorser.endorse(evidence, _public(key), "storage", NOW)
    assert endorsement.expires == NOW + dt.timedelta(hours=1)

    with pytest.raises(AttestationError, match="does not bind"):
        endorser.endorse(evidence, _public(new_key()), "storage", NOW)
    impostor = SimulatedBackend("storage", ec.generate_private_key(ec.SECP256R1()), b"signer")
    with pytest.raises(AttestationError, match="quoting key"):
        endorser.endorse(impostor.evidence(report_data_for(key.public_key())), _public(key), "storage", NOW)
    tampered = Evidence("sim", evidence.quote[:112] + bytes(32) + evidence.quote[144:], evidence.signature)
    with pytest.raises(AttestationError):
        endorser.endorse(tampered, _public(key), "storage", NOW)
    with pytest.raises(AttestationError, match="unknown kind of evidence 'quantum'"):
        endorser.endorse(Evidence("quantum", evidence.quote, evidence.signature), _public(key), "storage", NOW)
    with pytest.raises(InvalidArgumentError):
        endorser.endorse(evidence, b"not a key", "storage", NOW)


def test_backends_say_what_is_missing(tmp_path: Path) -> None:
    check_backend("sim")
    with pytest.raises(ConfigurationError, match="unknown TEE backend 'quantum'"):
        check_backend("quantum")
    with pytest.raises(ConfigurationError, match="Gramine library OS, but /dev/attestation/quote is missing"):
        check_backend("sgx", devices_root=tmp_path)
    with pytest.raises(ConfigurationError, match="TDX confidential VM, but /sys/kernel/config/tsm/report is missing"):
        check_backend("tdx", devices_root=tmp_path)
    with pytest.raises(ConfigurationError, match="SEV-SNP confidential VM, but /sys/kernel/config/tsm/report is"):
        check_backend("sev-snp", devices_root=tmp_path)
    with pytest.raises(ConfigurationError, match="Nitro Enclave, but /dev/nsm is missing"):
        check_backend("nitro", devices_root=tmp_path)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nsm").touch()
    check_backend("nitro", devices_root=tmp_path)  # present: the backend is used
