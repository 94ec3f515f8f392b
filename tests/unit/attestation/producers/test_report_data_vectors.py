"""Known answers: where the real fixtures' report data sits, and the SNP certificate table."""

from __future__ import annotations

import struct
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from shared_fixtures import TEE_EVIDENCE
from tee_stand_ins import nitro_document, sgx_quote, snp_report, tdx_quote

from cloister.attestation.producers.layouts import (
    sgx_report_data,
    snp_certificates,
    snp_report_data,
    tdx_report_data,
)
from cloister.attestation.producers.nsm import document_user_data
from cloister.errors import AttestationError

SNP = TEE_EVIDENCE / "sev-snp"


def test_report_data_of_the_real_quotes_and_report() -> None:
    # The SGX sample enclave put a greeting in its report data; the others are hashes.
    assert sgx_report_data(sgx_quote()) == b"Hello, world!".ljust(64, b"\0")
    assert tdx_report_data(tdx_quote()).hex().startswith("9a9d48e7f6799642d3d1b34e1e5e1742")
    assert snp_report_data(snp_report()).hex().startswith("d447b55d197491bfe15cf298f9de9986")
    assert document_user_data(nitro_document()) == b"\x01" * 1024


def test_each_layout_refuses_the_others_evidence() -> None:
    with pytest.raises(AttestationError, match="TDX quote version 3 is not supported"):
        tdx_report_data(sgx_quote())
    with pytest.raises(AttestationError, match="SGX quote version 4 is not supported"):
        sgx_report_data(tdx_quote())
    with pytest.raises(AttestationError, match="SEV-SNP report must be 1184 bytes, got 5006"):
        snp_report_data(tdx_quote())
    with pytest.raises(AttestationError, match="not a COSE_Sign1"):
        document_user_data(b"\x80")  # an empty CBOR array
    not_tdx = bytearray(tdx_quote())
    not_tdx[4] = 0x00  # TEE type SGX
    with pytest.raises(AttestationError, match="TEE type is 0x0, not TDX"):
        tdx_report_data(bytes(not_tdx))
    old_snp = struct.pack("<I", 1) + snp_report()[4:]
    with pytest.raises(AttestationError, match="version 1 is not supported"):
        snp_report_data(old_snp)
    with pytest.raises(AttestationError, match="too short"):
        sgx_report_data(sgx_quote()[:400])


def _der(name: str) -> bytes:
    data = (SNP / name).read_bytes()
    return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER) if name.endswith(".pem") else data


def _table(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A certificate table as a host lays it out: entries, an all-zero end entry, then the certificates."""
    offset = 24 * (len(entries) + 1)
    header, body = b"", b""
    for guid, der in entries:
        header += guid + struct.pack("<II", offset + len(body), len(der))
        body += der
    return header + bytes(24) + body


VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")


def test_snp_certificate_table_of_the_real_certificates() -> None:
    vcek, ask, ark = _der("vcek_milan.der"), _der("ask_milan.pem"), _der("ark_milan.pem")
    table = _table([(VCEK.bytes, vcek), (ASK.bytes, ask), (ARK.bytes, ark), (uuid.uuid4().bytes, b"other")])
    assert snp_certificates(table) == {"vcek": vcek, "ask": ask, "ark": ark}
    # Some hosts write GUIDs mixed-endian; the roles are still told apart.
    assert snp_certificates(_table([(VCEK.bytes_le, vcek)])) == {"vcek": vcek}
    assert snp_certificates(bytes(24)) == {}


def test_snp_certificate_table_refuses_what_it_cannot_read() -> None:
    with pytest.raises(AttestationError, match="no terminating entry"):
        snp_certificates(VCEK.bytes + struct.pack("<II", 24, 0))
    with pytest.raises(AttestationError, match="entry 0 points outside the table"):
        snp_certificates(VCEK.bytes + struct.pack("<II", 48, 4096) + bytes(24))
    with pytest.raises(AttestationError, match="no terminating entry"):
        snp_certificates(b"")
