"""Where the report data sits in each kind of hardware evidence, and the SEV-SNP certificate table.

Only what a producer needs to check that the hardware bound what it was asked to: the fixed
offsets of the 64 bytes of report data in an SGX DCAP quote v3, a TDX quote v4 and an SEV-SNP
attestation report, and the GUID table of certificates the host hands an SNP guest. Nothing
here checks a signature; verifying evidence is the verifiers' job.
"""

from __future__ import annotations

import struct
import uuid

from cloister.errors import AttestationError

REPORT_DATA_LENGTH = 64

_QUOTE_HEADER = 48
_SGX_REPORT_DATA = _QUOTE_HEADER + 320  # the report body's report data, 320 bytes into the body
_TDX_REPORT_DATA = _QUOTE_HEADER + 520  # the TD report body's, after TCB SVN, MRSEAM ... RTMR3
_TDX_TEE_TYPE = 0x81
_SNP_REPORT_LENGTH = 0x4A0
_SNP_REPORT_DATA = 0x50

SNP_CERTIFICATE_GUIDS = {
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask",
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek",
}
"""The GUIDs of AMD's GHCB specification for the entries of the certificate table."""
_SNP_TABLE_ENTRY = struct.Struct("<16sII")


def sgx_report_data(quote: bytes) -> bytes:
    """The report data of an SGX DCAP quote, version 3.

    Raises:
        AttestationError: the quote is not a version 3 quote of at least header and report body.
    """
    if len(quote) < _SGX_REPORT_DATA + REPORT_DATA_LENGTH:
        raise AttestationError(f"SGX quote too short ({len(quote)} bytes)")
    (version,) = struct.unpack_from("<H", quote, 0)
    if version != 3:
        raise AttestationError(f"SGX quote version {version} is not supported (expected 3)")
    return quote[_SGX_REPORT_DATA : _SGX_REPORT_DATA + REPORT_DATA_LENGTH]


def tdx_report_data(quote: bytes) -> bytes:
    """The report data of a TDX quote, version 4.

    Raises:
        AttestationError: the quote is not a version 4 TDX quote of at least header and TD report.
    """
    if len(quote) < _TDX_REPORT_DATA + REPORT_DATA_LENGTH:
        raise AttestationError(f"TDX quote too short ({len(quote)} bytes)")
    version, _key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if version != 4:
        raise AttestationError(f"TDX quote version {version} is not supported (expected 4)")
    if tee_type != _TDX_TEE_TYPE:
        raise AttestationError(f"quote's TEE type is {tee_type:#x}, not TDX ({_TDX_TEE_TYPE:#x})")
    return quote[_TDX_REPORT_DATA : _TDX_REPORT_DATA + REPORT_DATA_LENGTH]


def snp_report_data(report: bytes) -> bytes:
    """The report data of an SEV-SNP attestation report (version 2 or later).

    Raises:
        AttestationError: the report is not 1,184 bytes or its version is older than 2.
    """
    if len(report) != _SNP_REPORT_LENGTH:
        raise AttestationError(f"SEV-SNP report must be {_SNP_REPORT_LENGTH} bytes, got {len(report)}")
    (version,) = struct.unpack_from("<I", report, 0)
    if version < 2:
        raise AttestationError(f"SEV-SNP report version {version} is not supported (expected 2 or later)")
    return report[_SNP_REPORT_DATA : _SNP_REPORT_DATA + REPORT_DATA_LENGTH]


def snp_certificates(table: bytes) -> dict[str, bytes]:
    """The DER certificates in an SNP certificate table, by role (``ark``, ``ask``, ``vcek``, ``vlek``).

    The table is a list of (GUID, offset, length) entries ended by an all-zero entry; offsets
    count from the table's start. Entries with GUIDs of other roles are skipped.

    Raises:
        AttestationError: the table has no end entry, or an entry points outside it.
    """
    certificates: dict[str, bytes] = {}
    for position in range(0, len(table) - _SNP_TABLE_ENTRY.size + 1, _SNP_TABLE_ENTRY.size):
        raw_guid, offset, length = _SNP_TABLE_ENTRY.unpack_from(table, position)
        if raw_guid == bytes(16) and offset == 0 and length == 0:
            return certificates
        if offset < position + _SNP_TABLE_ENTRY.size or offset + length > len(table):
            index = position // _SNP_TABLE_ENTRY.size
            raise AttestationError(f"SEV-SNP certificate table entry {index} points outside the table")
        # AMD's tools write GUIDs in RFC 4122 byte order; some hosts write the mixed-endian form.
        role = SNP_CERTIFICATE_GUIDS.get(uuid.UUID(bytes=raw_guid)) or SNP_CERTIFICATE_GUIDS.get(
            uuid.UUID(bytes_le=raw_guid)
        )
        if role is not None:
            certificates[role] = table[offset : offset + length]
    raise AttestationError("SEV-SNP certificate table has no terminating entry")


_ROLE_GUIDS = {role: guid for guid, role in SNP_CERTIFICATE_GUIDS.items()}


def snp_certificate_table(certificates: dict[str, bytes]) -> bytes:
    """A certificate table as an SNP host hands it to its guest, holding ``certificates`` by role.

    The inverse of :func:`snp_certificates`: entries with RFC 4122 GUIDs, an all-zero end entry,
    then the certificates.
    """
    offset = _SNP_TABLE_ENTRY.size * (len(certificates) + 1)
    header, body = b"", b""
    for role, certificate in certificates.items():
        header += _SNP_TABLE_ENTRY.pack(_ROLE_GUIDS[role].bytes, offset + len(body), len(certificate))
        body += certificate
    return header + bytes(_SNP_TABLE_ENTRY.size) + body
