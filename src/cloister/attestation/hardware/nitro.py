"""AWS Nitro Enclaves attestation documents: COSE_Sign1 (ES384) over a CBOR payload.

The payload carries its own certificate chain (``cabundle``, root first, then ``certificate``);
the chain is checked link by link with ECDSA at the given time, its root must be the pinned
AWS Nitro root, and the leaf's key must sign the COSE ``Sig_structure``.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections.abc import Mapping
from importlib import resources
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from cloister.attestation.hardware.claims import Claims, TCBStatus, evidence_digest, require_aware
from cloister.attestation.report import nonpositive_serials_refused
from cloister.errors import AttestationError

__all__ = ["pinned_nitro_root", "verify_nitro"]

_COSE_SIGN1_TAG = 18
_ES384 = -35
_REQUIRED = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
_MALFORMED_CERTIFICATE = (ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension, UnsupportedAlgorithm)
"""What ``cryptography`` raises, at load or later when a field is first read, for a certificate it cannot use."""


def pinned_nitro_root() -> x509.Certificate:
    """The AWS Nitro Enclaves root certificate Cloister ships (SHA-256 of its DER: 641a0321a3e244ef...)."""
    data = resources.files(__package__).joinpath("roots", "aws_nitro_root.pem").read_bytes()
    return x509.load_pem_x509_certificate(data)


def verify_nitro(document: bytes, *, at: dt.datetime, root: x509.Certificate | None = None) -> Claims:
    """Claims of a Nitro attestation document, verified at ``at``.

    Args:
        document: the CBOR COSE_Sign1 (untagged, or with tag 18).
        at: the time to verify at; the leaf certificate lives for hours, so this is usually
            the document's own ``timestamp``.
        root: the root ``cabundle[0]`` must equal; None: the pinned AWS root.

    Raises:
        AttestationError: with the reason.
    """
    at = require_aware(at)
    protected, payload_bytes, signature = _cose_sign1(document)
    payload = _payload(payload_bytes)
    chain = [_certificate(der, "cabundle") for der in payload["cabundle"]]
    leaf = _certificate(payload["certificate"], "certificate")
    trusted = root or pinned_nitro_root()
    if not chain or chain[0].public_bytes(Encoding.DER) != trusted.public_bytes(Encoding.DER):
        raise AttestationError("the document's cabundle does not start with the trusted AWS Nitro root")
    chain.append(leaf)
    for below, (issuer, subject) in enumerate(itertools.pairwise(chain)):
        _check_issuer(issuer, len(chain) - below - 2)
        _check_link(subject, issuer)
    _check_link(chain[0], chain[0])
    for certificate in chain:
        if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
            raise AttestationError(
                f"certificate {certificate.subject.rfc4514_string()} is valid from "
                f"{certificate.not_valid_before_utc.isoformat()} to {certificate.not_valid_after_utc.isoformat()}, "
                f"not at {at.isoformat()}"
            )
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1" or len(signature) != 96:
        raise AttestationError("the document is not signed with ES384 by a P-384 key")
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload_bytes])
    r, s = int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
    try:
        key.verify(encode_dss_signature(r, s), to_sign, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise AttestationError("the Nitro document's signature does not verify under its certificate") from None
    pcrs: Mapping[int, bytes] = payload["pcrs"]
    try:
        issued_at = dt.datetime.fromtimestamp(payload["timestamp"] / 1000, dt.UTC)
    except (OverflowError, ValueError, OSError):
        raise AttestationError(f"the Nitro document's timestamp {payload['timestamp']} is not a time") from None
    return Claims(
        platform="nitro",
        measurements={f"pcr{index}": bytes(pcrs[index]) for index in sorted(pcrs)},
        report_data=_optional_bytes(payload, "user_data"),
        nonce=_optional_bytes(payload, "nonce"),
        public_key=_optional_bytes(payload, "public_key"),
        tcb_status=TCBStatus.UNRATED,
        # PCR 0 is all zeros only for an enclave started in debug mode (AWS's documentation); a
        # document without PCR 0 cannot show it is not one.
        debug=0 not in pcrs or not any(pcrs[0]),
        not_before=max(c.not_valid_before_utc for c in chain),
        not_after=min(c.not_valid_after_utc for c in chain),
        issued_at=issued_at,
        evidence_digest=evidence_digest(document),
        details={"module id": str(payload["module_id"]), "digest": str(payload["digest"])},
    )


def _cose_sign1(document: bytes) -> tuple[bytes, bytes, bytes]:
    stream = io.BytesIO(document)
    try:
        decoded = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise AttestationError(f"not a CBOR document: {exc}") from None
    if stream.tell() != len(document):
        # Bytes after the signed structure would change the evidence's digest, not what it says.
        raise AttestationError(f"{len(document) - stream.tell()} bytes follow the COSE_Sign1 structure")
    if isinstance(decoded, cbor2.CBORTag):
        if decoded.tag != _COSE_SIGN1_TAG:
            raise AttestationError(f"CBOR tag {decoded.tag} is not COSE_Sign1 ({_COSE_SIGN1_TAG})")
        decoded = decoded.value
    if not (isinstance(decoded, (list, tuple)) and len(decoded) == 4):  # cbor2 may decode a tagged array as a tuple
        raise AttestationError("not a COSE_Sign1 structure (a 4-element array)")
    protected, _unprotected, payload, signature = decoded
    if not all(isinstance(part, bytes) for part in (protected, payload, signature)):
        raise AttestationError("malformed COSE_Sign1: protected header, payload and signature must be byte strings")
    try:
        header = cbor2.loads(protected)
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        raise AttestationError("malformed COSE protected header") from None
    if not isinstance(header, dict) or header.get(1) != _ES384:
        raise AttestationError("the COSE algorithm is not ES384")
    return protected, payload, signature


def _payload(payload: bytes) -> dict[str, Any]:
    try:
        fields = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        raise AttestationError("the Nitro payload is not CBOR") from None
    if not isinstance(fields, dict):
        raise AttestationError("the Nitro payload is not a map")
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        raise AttestationError(f"the Nitro payload lacks {', '.join(missing)}")
    if fields["digest"] != "SHA384":
        raise AttestationError(f"PCR digest {fields['digest']!r} is not SHA384")
    pcrs = fields["pcrs"]
    if not (
        isinstance(pcrs, dict)
        and all(isinstance(i, int) and isinstance(v, bytes) and len(v) in (32, 48, 64) for i, v in pcrs.items())
    ):
        raise AttestationError("the Nitro payload's PCRs are malformed")
    if not isinstance(fields["timestamp"], int) or not isinstance(fields["cabundle"], list):
        raise AttestationError("the Nitro payload's timestamp or cabundle is malformed")
    return fields


def _certificate(der: object, field: str) -> x509.Certificate:
    if not isinstance(der, bytes):
        raise AttestationError(f"the Nitro payload's {field} holds a non-certificate")
    try:
        with nonpositive_serials_refused(f"the Nitro payload's {field}"):
            certificate = x509.load_der_x509_certificate(der)
        # cryptography parses these on first use: a malformed one must fail here, as ours.
        _ = (certificate.subject, certificate.issuer, certificate.signature_hash_algorithm, certificate.extensions)
    except _MALFORMED_CERTIFICATE:
        raise AttestationError(f"the Nitro payload's {field} holds a malformed certificate") from None
    return certificate


def _check_issuer(issuer: x509.Certificate, below: int) -> None:
    """``issuer`` is a CA whose path length allows the ``below`` CA certificates that follow it."""
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise AttestationError(f"{issuer.subject.rfc4514_string()} is not a CA, yet issues a certificate")
    if constraints.path_length is not None and below > constraints.path_length:
        raise AttestationError(
            f"{issuer.subject.rfc4514_string()} allows {constraints.path_length} CAs below it, the chain has {below}"
        )


def _check_link(subject: x509.Certificate, issuer: x509.Certificate) -> None:
    key = issuer.public_key()
    algorithm = subject.signature_hash_algorithm
    if not isinstance(key, ec.EllipticCurvePublicKey) or algorithm is None or subject.issuer != issuer.subject:
        raise AttestationError(f"{subject.subject.rfc4514_string()} is not issued by {issuer.subject.rfc4514_string()}")
    try:
        key.verify(subject.signature, subject.tbs_certificate_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise AttestationError(f"the signature on {subject.subject.rfc4514_string()} does not verify") from None


def _optional_bytes(payload: Mapping[str, Any], name: str) -> bytes:
    value = payload.get(name)
    if value is None:
        return b""
    if not isinstance(value, bytes):
        raise AttestationError(f"the Nitro payload's {name} is not a byte string")
    return value
