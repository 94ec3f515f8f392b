"""The 432-byte quote body of reference §14.3: measurements and report data at fixed offsets."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cloister.errors import AttestationError

QUOTE_BODY_LENGTH = 432
_MR_ENCLAVE = slice(112, 144)
_MR_SIGNER = slice(176, 208)
_REPORT_DATA = slice(368, 432)


@dataclass(frozen=True)
class QuoteBody:
    version: int
    mr_enclave: bytes
    mr_signer: bytes
    report_data: bytes
    isv_prod_id: int = 0
    isv_svn: int = 0

    def to_bytes(self) -> bytes:
        body = bytearray(QUOTE_BODY_LENGTH)
        struct.pack_into("<HH", body, 0, self.version, 0)
        body[_MR_ENCLAVE] = self.mr_enclave
        body[_MR_SIGNER] = self.mr_signer
        struct.pack_into("<HH", body, 304, self.isv_prod_id, self.isv_svn)
        body[_REPORT_DATA] = self.report_data
        return bytes(body)

    @classmethod
    def parse(cls, data: bytes) -> QuoteBody:
        if len(data) != QUOTE_BODY_LENGTH:
            raise AttestationError(f"quote body must be {QUOTE_BODY_LENGTH} bytes, got {len(data)}")
        version, _ = struct.unpack_from("<HH", data, 0)
        prod_id, svn = struct.unpack_from("<HH", data, 304)
        return cls(version, data[_MR_ENCLAVE], data[_MR_SIGNER], data[_REPORT_DATA], prod_id, svn)
