"""Real hardware evidence (shared fixtures, NOTICE.md) verifies inside its window and fails as NOTICE says."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import warnings

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from shared_fixtures import TEE_EVIDENCE

from cloister.attestation.hardware.claims import TCBStatus
from cloister.attestation.hardware.dcap import verify_sgx, verify_tdx
from cloister.attestation.hardware.evidence_files import decode_evidence
from cloister.attestation.hardware.nitro import pinned_nitro_root, verify_nitro
from cloister.attestation.hardware.snp import load_amd_certificate, pinned_arks, verify_snp
from cloister.errors import AttestationError


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0x01
    return bytes(changed)


SGX_QUOTE = (TEE_EVIDENCE / "sgx" / "sgx_quote").read_bytes()
SGX_COLLATERAL = (TEE_EVIDENCE / "sgx" / "sgx_quote_collateral.json").read_text()
TDX_QUOTE = (TEE_EVIDENCE / "tdx" / "tdx_quote").read_bytes()
TDX_COLLATERAL = (TEE_EVIDENCE / "tdx" / "tdx_quote_collateral.json").read_text()
SNP_REPORT = decode_evidence((TEE_EVIDENCE / "sev-snp" / "report_milan.hex").read_bytes())
VCEK = load_amd_certificate((TEE_EVIDENCE / "sev-snp" / "vcek_milan.der").read_bytes())
NITRO = decode_evidence((TEE_EVIDENCE / "nitro" / "nitro_attestation.b64").read_bytes())
NITRO_TIME = _utc("2024-09-07T14:37:39.545Z")


# SGX: window 2025-06-19T10:56:11Z .. 2025-07-19T10:01:18Z


@pytest.mark.parametrize("at", ["2025-06-19T10:56:11Z", "2025-07-01T00:00:00Z", "2025-07-19T10:01:18Z"])
def test_sgx_quote_verifies_inside_its_window(at: str) -> None:
    claims = verify_sgx(SGX_QUOTE, collateral=SGX_COLLATERAL, at=_utc(at))
    assert claims.platform == "sgx"
    assert claims.tcb_status is TCBStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED
    assert claims.advisories == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert claims.details["FMSPC"] == "00A067110000"
    assert claims.measurements["mr_enclave"].hex().startswith("33d8736db756ed49")
    assert claims.measurements["mr_signer"].hex().startswith("815f42f11cf64430")
    assert claims.report_data.startswith(b"Hello, world!")
    assert not claims.debug and not claims.simulated
    assert (claims.not_before, claims.not_after) == (_utc("2025-06-19T10:56:11Z"), _utc("2025-07-19T10:01:18Z"))
    assert claims.evidence_digest == hashlib.sha256(SGX_QUOTE).digest()


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        ("2025-06-19T10:56:10Z", "issue date is in the future"),
        ("2025-07-19T10:01:19Z", "QE Identity expired"),
        ("2025-07-19T10:56:12Z", "TCBInfo expired"),
        ("2026-07-20T00:00:00Z", "CrlExpired"),
    ],
)
def test_sgx_quote_fails_outside_its_window(at: str, reason: str) -> None:
    with pytest.raises(AttestationError, match=reason):
        verify_sgx(SGX_QUOTE, collateral=SGX_COLLATERAL, at=_utc(at))


def test_sgx_quote_with_a_byte_flipped_fails() -> None:
    at = _utc("2025-07-01T00:00:00Z")
    # 112: first byte of mr_enclave in the report body; 48 + 384 + 4: first byte of the ECDSA signature.
    for offset in (112, 48 + 384 + 4):
        with pytest.raises(AttestationError, match="does not verify"):
            verify_sgx(_flip(SGX_QUOTE, offset), collateral=SGX_COLLATERAL, at=at)


def test_sgx_quote_under_a_wrong_root_fails() -> None:
    other_root = pinned_nitro_root().public_bytes(Encoding.DER)
    with pytest.raises(AttestationError, match="does not verify"):
        verify_sgx(SGX_QUOTE, collateral=SGX_COLLATERAL, at=_utc("2025-07-01T00:00:00Z"), root_der=other_root)


def test_sgx_quote_is_not_a_tdx_quote() -> None:
    with pytest.raises(AttestationError, match="SGX quote, not TDX"):
        verify_tdx(SGX_QUOTE, collateral=SGX_COLLATERAL, at=_utc("2025-07-01T00:00:00Z"))


# TDX: window 2025-06-19T10:32:27Z .. 2025-07-19T10:00:35Z (the PCK CRL's nextUpdate, which dcap-qvl treats as expired)


@pytest.mark.parametrize("at", ["2025-06-19T10:32:27Z", "2025-07-01T00:00:00Z", "2025-07-19T10:00:34Z"])
def test_tdx_quote_verifies_inside_its_window(at: str) -> None:
    claims = verify_tdx(TDX_QUOTE, collateral=TDX_COLLATERAL, at=_utc(at))
    assert claims.platform == "tdx"
    assert claims.tcb_status is TCBStatus.UP_TO_DATE
    assert claims.advisories == ()
    assert claims.details["FMSPC"] == "B0C06F000000"
    assert claims.measurements["mr_td"].hex().startswith("91eb2b44d141d4ec")
    assert claims.measurements["rtmr0"].hex().startswith("44c0197b39157fdd")
    assert claims.measurements["mr_seam"].hex().startswith("5b38e33a6487958b")
    assert len(claims.report_data) == 64 and not claims.debug
    assert (claims.not_before, claims.not_after) == (_utc("2025-06-19T10:32:27Z"), _utc("2025-07-19T10:00:35Z"))


@pytest.mark.parametrize("at", ["2025-06-19T10:32:26Z", "2025-07-19T10:00:35Z", "2026-07-20T00:00:00Z"])
def test_tdx_quote_fails_outside_its_window(at: str) -> None:
    with pytest.raises(AttestationError, match="does not verify"):
        verify_tdx(TDX_QUOTE, collateral=TDX_COLLATERAL, at=_utc(at))


def test_tdx_quote_with_a_byte_flipped_fails() -> None:
    at = _utc("2025-07-01T00:00:00Z")
    # 48 + 136: first byte of mr_td; 48 + 584 + 4: first byte of the signature.
    for offset in (48 + 136, 48 + 584 + 4):
        with pytest.raises(AttestationError, match="does not verify"):
            verify_tdx(_flip(TDX_QUOTE, offset), collateral=TDX_COLLATERAL, at=at)


# SEV-SNP: the VCEK is valid 2023-04-03T19:23:43Z .. 2030-04-03T19:23:43Z


def test_snp_report_verifies_inside_its_window() -> None:
    claims = verify_snp(SNP_REPORT, vcek=VCEK, at=_utc("2025-07-01T00:00:00Z"))
    assert claims.platform == "sev-snp"
    assert claims.tcb_status is TCBStatus.UNRATED
    assert dict(claims.tcb_levels) == {"boot_loader": 3, "tee": 0, "snp": 8, "microcode": 115}
    assert claims.measurements["measurement"].hex().startswith("7a1e5c266c0108db")
    assert claims.report_data.hex().startswith("d447b55d197491bf")
    assert not claims.debug
    assert claims.details["product"] == "Milan" and claims.details["guest policy"] == "0x30000"
    assert (claims.not_before, claims.not_after) == (_utc("2023-04-03T19:23:43Z"), _utc("2030-04-03T19:23:43Z"))


def test_snp_vcek_loads_without_leaking_the_serial_number_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_amd_certificate((TEE_EVIDENCE / "sev-snp" / "vcek_milan.der").read_bytes())


def test_snp_report_with_a_byte_flipped_fails() -> None:
    at = _utc("2025-07-01T00:00:00Z")
    for offset in (0x90, 0x2A0):  # the measurement; the signature's r
        with pytest.raises(AttestationError, match="signature does not verify"):
            verify_snp(_flip(SNP_REPORT, offset), vcek=VCEK, at=at)


def test_snp_report_after_the_vcek_expires_fails() -> None:
    with pytest.raises(AttestationError, match="VCEK is valid from"):
        verify_snp(SNP_REPORT, vcek=VCEK, at=_utc("2030-04-03T19:23:44Z"))


def test_snp_report_under_a_wrong_root_fails() -> None:
    genoa_only = [ark for ark in pinned_arks() if "Genoa" in ark.subject.rfc4514_string()]
    with pytest.raises(AttestationError, match="does not chain to a trusted AMD root"):
        verify_snp(SNP_REPORT, vcek=VCEK, at=_utc("2025-07-01T00:00:00Z"), arks=genoa_only)


def test_shipped_milan_root_is_the_fixture_root() -> None:
    fixture = x509.load_pem_x509_certificate((TEE_EVIDENCE / "sev-snp" / "ark_milan.pem").read_bytes())
    assert fixture in pinned_arks()


# Nitro: the leaf certificate lives 2024-09-07T14:37:36Z .. 17:37:39Z


def test_nitro_document_verifies_at_its_time() -> None:
    claims = verify_nitro(NITRO, at=NITRO_TIME)
    assert claims.platform == "nitro"
    nonzero = sorted(int(name[3:]) for name, value in claims.measurements.items() if any(value))
    assert nonzero == [0, 1, 2, 4]
    assert claims.issued_at == NITRO_TIME
    assert claims.report_data == claims.nonce == claims.public_key == b"\x01" * 1024
    assert not claims.debug
    assert (claims.not_before, claims.not_after) == (_utc("2024-09-07T14:37:36Z"), _utc("2024-09-07T17:37:39Z"))


def test_pinned_nitro_root_is_the_aws_root() -> None:
    der = pinned_nitro_root().public_bytes(Encoding.DER)
    assert hashlib.sha256(der).hexdigest().startswith("641a0321a3e244ef")


def test_nitro_document_tagged_18_verifies() -> None:
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(NITRO)))
    assert verify_nitro(tagged, at=NITRO_TIME).measurements == verify_nitro(NITRO, at=NITRO_TIME).measurements


def test_nitro_document_after_the_leaf_expires_fails() -> None:
    with pytest.raises(AttestationError, match="not at 2024-09-07T17:37:40"):
        verify_nitro(NITRO, at=_utc("2024-09-07T17:37:40Z"))


def test_nitro_document_with_a_byte_flipped_fails() -> None:
    protected, unprotected, payload, signature = cbor2.loads(NITRO)
    module_id = payload.index(b"i-0a22e5c5f24d22174")
    with pytest.raises(AttestationError, match="signature does not verify"):
        verify_nitro(cbor2.dumps([protected, unprotected, _flip(payload, module_id), signature]), at=NITRO_TIME)
    with pytest.raises(AttestationError, match="signature does not verify"):
        verify_nitro(cbor2.dumps([protected, unprotected, payload, _flip(signature, 5)]), at=NITRO_TIME)


def test_nitro_document_under_a_wrong_root_fails() -> None:
    milan = pinned_arks()[0]
    with pytest.raises(AttestationError, match="does not start with the trusted AWS Nitro root"):
        verify_nitro(NITRO, at=NITRO_TIME, root=milan)


def test_evidence_files_decode_binary_hex_and_base64() -> None:
    assert decode_evidence(SGX_QUOTE) == SGX_QUOTE
    assert decode_evidence(SGX_QUOTE.hex().encode() + b"\n") == SGX_QUOTE
    assert decode_evidence(base64.b64encode(SGX_QUOTE)) == SGX_QUOTE
    assert len(SNP_REPORT) == 1184
