"""Evidence as people keep it: raw bytes, hex or base64, told apart by content.

The fixtures show all three (an SGX quote as binary, an SNP report as hex, a Nitro document as
base64), and a tool that demanded one of them would only move the conversion to the user.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

_HEX = re.compile(rb"\A[0-9a-fA-F\s]+\Z")
_BASE64 = re.compile(rb"\A[A-Za-z0-9+/=_\-\s]+\Z")


def decode_evidence(data: bytes) -> bytes:
    """The raw evidence in ``data``: hex and base64 text are decoded, anything else is taken as is.

    Hex wins over base64 when text is both (an even run of hex digits), since quotes and reports
    contain non-text bytes and never look like either by accident.
    """
    text = data.strip()
    if text and _HEX.match(text):
        digits = b"".join(text.split())
        if len(digits) % 2 == 0:
            return binascii.unhexlify(digits)
    if text and _BASE64.match(text):
        compact = b"".join(text.split())
        try:
            if b"-" in compact or b"_" in compact:
                return base64.urlsafe_b64decode(compact + b"=" * (-len(compact) % 4))
            return base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
        except binascii.Error:
            pass
    return data


def read_evidence(path: Path) -> bytes:
    return decode_evidence(path.read_bytes())
