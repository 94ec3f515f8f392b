"""SGX evidence through Gramine's /dev/attestation, against a stand-in directory (not Gramine).

The stand-in (``tee_stand_ins.stand_in_gramine``) is a temporary directory laid out like
Gramine's ``/dev/attestation`` whose ``quote`` answers with the real fixture quote; the backend
opens it through ``open_hardware_backend`` exactly as it would inside an enclave.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tee_stand_ins import SGX_REPORT_DATA_OFFSET, sgx_quote, stand_in_gramine, unchanged, with_report_data_at

from cloister.attestation.certificate import new_key, report_data_for
from cloister.attestation.deployment import provision
from cloister.attestation.identity import open_backend
from cloister.attestation.producers import GramineBackend, open_hardware_backend
from cloister.attestation.producers.layouts import sgx_report_data
from cloister.config import SERVICES
from cloister.errors import AttestationError, ConfigurationError
from cloister.services.attestation.endorser import Endorser


def test_sgx_quote_binds_the_service_key(tmp_path: Path) -> None:
    quote = sgx_quote()
    keys = [report_data_for(ec.generate_private_key(ec.SECP256R1()).public_key()) for _ in range(2)]
    answer = with_report_data_at(quote, SGX_REPORT_DATA_OFFSET)
    with stand_in_gramine(tmp_path / "dev" / "attestation", answer) as written:
        backend = open_hardware_backend("sgx", devices_root=tmp_path)
        assert isinstance(backend, GramineBackend) and not backend.simulated
        evidence = [backend.evidence(report_data) for report_data in keys]
    assert written == keys
    for report_data, produced in zip(keys, evidence, strict=True):
        assert produced.tee_backend == "sgx" and produced.signature == b""
        assert sgx_report_data(produced.quote) == report_data
        assert len(produced.quote) == len(quote)


def test_the_real_quote_answers_only_its_own_report_data(tmp_path: Path) -> None:
    quote = sgx_quote()
    with stand_in_gramine(tmp_path, unchanged(quote)):
        backend = GramineBackend(tmp_path)
        assert backend.evidence(b"Hello, world!".ljust(64, b"\0")).quote == quote
        with pytest.raises(AttestationError, match="the sgx quote's report data is not the 64 bytes"):
            backend.evidence(bytes(64))
        with pytest.raises(ValueError, match="64 bytes"):
            backend.evidence(bytes(32))


@pytest.mark.parametrize("kind", ["none", "epid"])
def test_gramine_must_be_told_to_use_dcap(tmp_path: Path, kind: str) -> None:
    with (
        stand_in_gramine(tmp_path / "dev" / "attestation", unchanged(sgx_quote()), attestation_type=kind),
        pytest.raises(ConfigurationError, match=f"attestation type is '{kind}', but Cloister needs DCAP"),
    ):
        open_hardware_backend("sgx", devices_root=tmp_path)


def test_gramine_refusing_is_an_attestation_error(tmp_path: Path) -> None:
    (tmp_path / "user_report_data").mkdir()  # writing to it fails, as a write Gramine refuses does
    with pytest.raises(AttestationError, match="Gramine could not produce a quote"):
        GramineBackend(tmp_path).evidence(bytes(64))


def test_without_a_pccs_the_attestation_service_refuses_the_quote(tmp_path: Path) -> None:
    """A service on SGX with no PCCS to fetch Intel's collateral from (``pccs_url = ""``): its
    evidence is made, and the attestation service refuses it for want of the collateral
    (``test_intel_collateral.py`` has the backend fetch it)."""
    deployment = provision(tmp_path / "state", SERVICES)
    key = new_key()
    answer = with_report_data_at(sgx_quote(), SGX_REPORT_DATA_OFFSET)
    with stand_in_gramine(tmp_path / "root" / "dev" / "attestation", answer):
        backend = open_backend("sgx", deployment, "storage", devices_root=tmp_path / "root")
        evidence = backend.evidence(report_data_for(key.public_key()))
    assert isinstance(backend, GramineBackend)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    endorser = Endorser(deployment, dt.timedelta(hours=1))
    assert evidence.collateral == b""
    with pytest.raises(AttestationError, match="SGX evidence came without Intel's PCS collateral"):
        endorser.endorse(evidence, public, "storage", dt.datetime.now(dt.UTC))
