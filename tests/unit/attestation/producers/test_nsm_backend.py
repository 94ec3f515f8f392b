"""Nitro evidence through the NSM: the CBOR request and response, with the real fixture document.

The device itself exists only inside an enclave. ``nsm_exchange`` (the one function that calls
the ioctl) is exercised here only where it fails; a stand-in (``tee_stand_ins.StandInNSM``)
answers requests as the device would, with the real attestation document.
"""

from __future__ import annotations

import os
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tee_stand_ins import StandInNSM, nitro_document

from cloister.attestation.certificate import report_data_for
from cloister.attestation.producers import NitroBackend, open_hardware_backend
from cloister.attestation.producers.nsm import (
    NSM_IOCTL_RAW,
    attestation_request,
    document_from_response,
    document_user_data,
    nsm_exchange,
)
from cloister.errors import AttestationError


def test_the_request_is_the_nsm_apis_attestation_request() -> None:
    user_data = bytes(range(64))
    encoded = attestation_request(user_data)
    assert cbor2.loads(encoded) == {"Attestation": {"user_data": user_data, "nonce": None, "public_key": None}}
    # A one-entry map (0xa1) keyed by the text "Attestation" (0x6b + 11 bytes), then a three-entry map.
    assert encoded[:14] == b"\xa1\x6bAttestation" + b"\xa3"
    assert NSM_IOCTL_RAW == 0xC0200A00  # _IOWR(0x0A, 0, struct nsm_raw) with two 16-byte iovecs


def test_the_response_yields_the_real_document() -> None:
    document = nitro_document()
    assert document_from_response(cbor2.dumps({"Attestation": {"document": document}})) == document
    assert document_user_data(document) == b"\x01" * 1024
    assert document_user_data(cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(document)))) == b"\x01" * 1024


def test_error_responses_are_refused() -> None:
    with pytest.raises(AttestationError, match="the NSM refused the attestation request: InvalidArgument"):
        document_from_response(cbor2.dumps({"Error": "InvalidArgument"}))
    with pytest.raises(AttestationError, match="carries no attestation document"):
        document_from_response(cbor2.dumps({"DescribeNSM": {}}))
    with pytest.raises(AttestationError, match="is not CBOR"):
        document_from_response(b"\xff")


def test_document_binds_the_service_key() -> None:
    stand_in = StandInNSM(nitro_document(), replace_user_data=True)
    report_data = report_data_for(ec.generate_private_key(ec.SECP256R1()).public_key())

    evidence = stand_in.backend().evidence(report_data)

    assert stand_in.requests == [{"Attestation": {"user_data": report_data, "nonce": None, "public_key": None}}]
    assert evidence.tee_backend == "nitro" and evidence.signature == b""
    assert document_user_data(evidence.quote) == report_data


def test_the_real_document_carries_other_user_data_and_is_refused() -> None:
    with pytest.raises(AttestationError, match="the nitro document's user_data is not the 64 bytes"):
        StandInNSM(nitro_document(), replace_user_data=False).backend().evidence(bytes(64))


def test_a_device_that_is_not_the_nsm(tmp_path: Path) -> None:
    with pytest.raises(AttestationError, match="cannot open the NSM device"):
        nsm_exchange(tmp_path / "nsm", attestation_request(bytes(64)))
    # /dev/null takes no ioctl: the kernel's answer becomes the error.
    with pytest.raises(AttestationError, match=f"the NSM device /dev/null refused the request: {os.strerror(25)}"):
        nsm_exchange(Path("/dev/null"), attestation_request(bytes(64)))
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nsm").touch()
    backend = open_hardware_backend("nitro", devices_root=tmp_path)
    assert isinstance(backend, NitroBackend) and backend.device == tmp_path / "dev" / "nsm"
    with pytest.raises(AttestationError, match="refused the request"):
        backend.evidence(bytes(64))
