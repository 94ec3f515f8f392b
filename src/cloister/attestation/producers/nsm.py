"""AWS Nitro Enclaves attestation documents through the Nitro Secure Module (``/dev/nsm``).

The NSM speaks CBOR over one ioctl: the request ``{"Attestation": {"user_data", "nonce",
"public_key"}}`` goes in, ``{"Attestation": {"document": ...}}`` (or ``{"Error": ...}``) comes
back. The document is a COSE_Sign1 whose payload carries the ``user_data`` we asked for; the
64 bytes of report data go there. Only :func:`nsm_exchange` touches the device.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from pathlib import Path
from typing import Any

import cbor2

from cloister.attestation.backends import Evidence, TEEBackend
from cloister.attestation.producers.layouts import REPORT_DATA_LENGTH
from cloister.errors import AttestationError

NSM_DEVICE = Path("/dev/nsm")
NSM_RESPONSE_MAX = 0x3000
"""The largest response the NSM returns (its driver's limit)."""

_RAW = struct.Struct("=QQQQ")  # struct nsm_raw: the request's and the response's (address, length)
_IOC_READ_WRITE = 3


def _iowr(kind: int, number: int, size: int) -> int:
    return (_IOC_READ_WRITE << 30) | (size << 16) | (kind << 8) | number


NSM_IOCTL_RAW = _iowr(0x0A, 0, _RAW.size)
"""``_IOWR(0x0A, 0, struct nsm_raw)`` of Linux's ``uapi/linux/nsm.h``."""
_COSE_SIGN1_TAG = 18


def attestation_request(user_data: bytes) -> bytes:
    """The CBOR of an NSM ``Attestation`` request carrying ``user_data`` and no nonce or public key."""
    return cbor2.dumps({"Attestation": {"user_data": user_data, "nonce": None, "public_key": None}})


def document_from_response(response: bytes) -> bytes:
    """The attestation document in an NSM response.

    Raises:
        AttestationError: the NSM answered with an error, or the response is not an attestation.
    """
    try:
        decoded = cbor2.loads(response)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise AttestationError(f"the NSM's response is not CBOR: {exc}") from None
    if isinstance(decoded, dict) and "Error" in decoded:
        raise AttestationError(f"the NSM refused the attestation request: {str(decoded['Error'])[:80]}")
    body = decoded.get("Attestation") if isinstance(decoded, dict) else None
    document = body.get("document") if isinstance(body, dict) else None
    if not isinstance(document, bytes):
        raise AttestationError("the NSM's response carries no attestation document")
    return document


def document_user_data(document: bytes) -> bytes | None:
    """The ``user_data`` in an attestation document's payload (``None`` when absent).

    This reads the payload only; it does not verify the signature.

    Raises:
        AttestationError: the document is not a COSE_Sign1 with a CBOR map as payload.
    """
    try:
        envelope: Any = cbor2.loads(document)
        if isinstance(envelope, cbor2.CBORTag) and envelope.tag == _COSE_SIGN1_TAG:
            envelope = envelope.value
        # A tagged array decodes as a tuple, an untagged one as a list.
        if not (isinstance(envelope, list | tuple) and len(envelope) == 4 and isinstance(envelope[2], bytes)):
            raise AttestationError("the attestation document is not a COSE_Sign1 structure")
        payload = cbor2.loads(envelope[2])
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise AttestationError(f"the attestation document is not CBOR: {exc}") from None
    if not isinstance(payload, dict):
        raise AttestationError("the attestation document's payload is not a map")
    user_data = payload.get("user_data")
    if user_data is not None and not isinstance(user_data, bytes):
        raise AttestationError("the attestation document's user_data is not a byte string")
    return user_data


def nsm_exchange(device: Path, request: bytes) -> bytes:
    """Send one CBOR request to the NSM device and return its CBOR response.

    Raises:
        AttestationError: the device cannot be opened or the ioctl fails.
    """
    request_buffer = ctypes.create_string_buffer(request, len(request))
    response_buffer = ctypes.create_string_buffer(NSM_RESPONSE_MAX)
    raw = bytearray(
        _RAW.pack(ctypes.addressof(request_buffer), len(request), ctypes.addressof(response_buffer), NSM_RESPONSE_MAX)
    )
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise AttestationError(f"cannot open the NSM device {device}: {exc.strerror}") from None
    try:
        fcntl.ioctl(fd, NSM_IOCTL_RAW, raw, True)
    except OSError as exc:
        raise AttestationError(f"the NSM device {device} refused the request: {exc.strerror}") from None
    finally:
        os.close(fd)
    length = _RAW.unpack(raw)[3]
    if length > NSM_RESPONSE_MAX:
        raise AttestationError(f"the NSM reported a {length}-byte response, more than its buffer")
    return response_buffer.raw[:length]


class NitroBackend(TEEBackend):
    """Evidence from the Nitro Secure Module: an attestation document with the report data as ``user_data``.

    Args:
        device: the NSM device.
    """

    name = "nitro"
    simulated = False

    def __init__(self, device: Path = NSM_DEVICE) -> None:
        self.device = device

    def evidence(self, report_data: bytes) -> Evidence:
        """A fresh attestation document whose ``user_data`` is ``report_data``.

        Raises:
            ValueError: ``report_data`` is not 64 bytes.
            AttestationError: the NSM refused, or the document does not carry ``report_data``.
        """
        if len(report_data) != REPORT_DATA_LENGTH:
            raise ValueError(f"report data must be {REPORT_DATA_LENGTH} bytes")
        document = document_from_response(self._exchange(attestation_request(report_data)))
        if document_user_data(document) != report_data:
            raise AttestationError("the nitro document's user_data is not the 64 bytes that were asked for")
        return Evidence(self.name, document, b"")

    def _exchange(self, request: bytes) -> bytes:
        """One request to the NSM; the call a stand-in for the device replaces."""
        return nsm_exchange(self.device, request)
