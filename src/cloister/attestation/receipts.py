"""Task receipts: what an execution service ran, signed by the key its attested certificate binds.

A receipt is a compact JWS (ES256) whose payload follows IETF EAR (EAT Attestation Results):
``eat_profile``, ``iat``, ``ear.verifier-id`` and one submodule, ``execution``, with its
``ear.status`` and Cloister's claims under ``cloister.*``: the task, the approved manifest, the
inputs' and outputs' cmacs, and the evidence the TEE backend produced for this task, whose report
data is the manifest hash followed by the SHA-256 of the signing key (:func:`task_report_data`).
The header's ``x5c`` carries the service's attested certificate.

PyJWT (already a dependency) signs and checks the signature with the algorithm pinned to ES256,
so neither ``none`` nor an HMAC with the public key can be slipped in. Checking a receipt
(:func:`verify_receipt`) needs only the deployment's trust files: the certificate's report must
chain to the attestation root CA, bind the certificate's key, and carry the execution service's
measurements from ``enclave_info.toml``; everything else follows from the signature. Each
base64url segment must be in its one canonical form, so no changed byte goes unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.utils import CryptographyDeprecationWarning

from cloister.attestation.backends import Evidence
from cloister.attestation.certificate import ec_public_key_of
from cloister.attestation.enclave_info import EnclaveInfo
from cloister.attestation.measurement import enclave_name
from cloister.attestation.quote import QuoteBody
from cloister.attestation.report import AttestationPolicy
from cloister.attestation.sim import verify_simulated_evidence
from cloister.attestation.verify import verify_attested_certificate
from cloister.errors import AttestationError
from cloister.model.manifest import ManifestMismatchError, TaskManifest

EAT_PROFILE = "tag:cloister.dev,2026:task-receipt/v1"
VERIFIER_ID = {"developer": "cloister", "build": "cloister-execution"}
_SUBMOD = "execution"
_TYPE = "cloister-receipt+jwt"


def task_report_data(manifest_hash: bytes, key: ec.EllipticCurvePublicKey) -> bytes:
    """The 64 bytes of report data for a task's evidence: manifest hash ‖ SHA-256(key's SPKI DER)."""
    if len(manifest_hash) != 32:
        raise ValueError("a manifest hash is 32 bytes")
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return manifest_hash + hashlib.sha256(spki).digest()


def evidence_digest(evidence: Evidence) -> str:
    """SHA-256 (hex) over the backend name, the quote and its signature, each length-prefixed."""
    digest = hashlib.sha256()
    for part in (evidence.tee_backend.encode(), evidence.quote, evidence.signature):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"receipt: {what} is not base64") from None


def sign_receipt(
    *,
    key: ec.EllipticCurvePrivateKey,
    certificate_der: bytes,
    manifest: TaskManifest,
    status: str,
    inputs: Mapping[str, bytes],
    outputs: Mapping[str, bytes],
    evidence: Evidence,
    simulated: bool,
    issued_at: int,
) -> str:
    """A receipt for a task that ended with ``status`` ("Finished" or "Failed")."""
    claims = {
        "eat_profile": EAT_PROFILE,
        "iat": issued_at,
        "ear.verifier-id": VERIFIER_ID,
        "submods": {
            _SUBMOD: {
                # EAR's four-level verdict on the attester: a simulated hardware root is a warning.
                "ear.status": "warning" if simulated else "affirming",
                "cloister.task": {
                    "task_id": manifest.task_id,
                    "status": status,
                    "manifest_hash": manifest.manifest_hash.hex(),
                    "inputs": {name: tag.hex() for name, tag in sorted(inputs.items())},
                    "outputs": {name: tag.hex() for name, tag in sorted(outputs.items())},
                },
                "cloister.manifest": manifest.to_json(),
                "cloister.evidence": {
                    "tee_backend": evidence.tee_backend,
                    "simulated": simulated,
                    "quote": _b64(evidence.quote),
                    "signature": _b64(evidence.signature),
                    "digest": evidence_digest(evidence),
                },
            }
        },
    }
    headers = {"typ": _TYPE, "x5c": [_b64(certificate_der)]}
    return jwt.encode(claims, key, algorithm="ES256", headers=headers)


@dataclass(frozen=True)
class VerifiedReceipt:
    task_id: str
    status: str
    manifest_hash: bytes
    manifest: TaskManifest
    inputs: dict[str, str]
    outputs: dict[str, str]
    issued_at: dt.datetime
    ear_status: str
    tee_backend: str
    signer: str
    """The enclave_info identity of the service that signed it."""
    evidence_signature_checked: bool
    """Whether the task evidence's own signature was checked (needs the backend's verifier key)."""


def _canonical_segments(token: str) -> list[bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise AttestationError("receipt is not a compact JWS (three dot-separated parts)")
    decoded = []
    for name, part in zip(("header", "payload", "signature"), parts, strict=True):
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            raise AttestationError(f"receipt {name} is not base64url") from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != part:
            raise AttestationError(f"receipt {name} is not in canonical base64url")
        decoded.append(raw)
    return decoded


def read_receipt_text(data: bytes) -> str:
    """The token in a receipt file: ASCII, with at most one trailing newline."""
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise AttestationError("receipt is not ASCII text") from None


def verify_receipt(
    token: str,
    root: x509.Certificate,
    enclave_info: EnclaveInfo,
    policy: AttestationPolicy,
    *,
    at: dt.datetime | None = None,
    quoting_key: ec.EllipticCurvePublicKey | None = None,
) -> VerifiedReceipt:
    """Check a receipt offline against a deployment's trust files.

    The signing certificate and its report are checked as of ``at`` (default: the receipt's own
    ``iat``, so a receipt stays checkable after its short-lived certificate expires). With
    ``quoting_key`` (the ``sim`` backend's public quoting key) the task evidence's signature is
    checked too.

    Raises:
        AttestationError: saying which check failed.
    """
    header_raw, payload_raw, _ = _canonical_segments(token)
    try:
        header = json.loads(header_raw)
        payload = json.loads(payload_raw)
    except ValueError:
        raise AttestationError("receipt header or payload is not JSON") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AttestationError("receipt header or payload is not a JSON object")
    if header.get("alg") != "ES256" or header.get("typ") != _TYPE:
        raise AttestationError("receipt is not an ES256-signed Cloister receipt")
    chain = header.get("x5c")
    if not isinstance(chain, list) or len(chain) != 1:
        raise AttestationError("receipt must carry exactly one certificate in x5c")
    cert_der = _unb64(chain[0], "x5c certificate")
    try:  # cryptography parses lazily: a damaged certificate can fail at any of these
        with warnings.catch_warnings():
            # A serial number that is not positive: cryptography warns and will refuse it; so do we
            # (every certificate a Cloister deployment issues has a random positive one).
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            parsed = x509.load_der_x509_certificate(cert_der)
            parsed.public_key()
            _ = parsed.extensions, parsed.not_valid_before_utc, parsed.not_valid_after_utc
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm, CryptographyDeprecationWarning):
        raise AttestationError("receipt certificate is not a valid DER certificate") from None
    issued = payload.get("iat")
    if not isinstance(issued, int) or isinstance(issued, bool):
        raise AttestationError("receipt has no integer iat")
    issued_at = dt.datetime.fromtimestamp(issued, dt.UTC)
    when = at or issued_at
    try:
        attested = verify_attested_certificate(cert_der, root, policy, when)
    except (ValueError, TypeError, KeyError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        # A damaged report inside the certificate: whatever layer noticed it, nothing is trusted.
        raise AttestationError(f"receipt certificate's report is malformed ({type(exc).__name__})") from None
    cert = attested.certificate
    if not cert.not_valid_before_utc <= issued_at <= cert.not_valid_after_utc:
        raise AttestationError("receipt was issued outside its certificate's validity period")
    quote = attested.report.quote
    signer = enclave_info.identify(attested.report, [enclave_name("execution")]).name
    public_key = ec_public_key_of(cert)
    try:
        jwt.PyJWS().decode_complete(token, public_key, algorithms=["ES256"])
    except jwt.InvalidTokenError:
        raise AttestationError("receipt signature does not verify under its certificate's key") from None
    return _check_claims(payload, public_key, quote, issued_at, signer, quoting_key)


def _check_claims(
    payload: dict[str, Any],
    public_key: ec.EllipticCurvePublicKey,
    cert_quote: QuoteBody,
    issued_at: dt.datetime,
    signer: str,
    quoting_key: ec.EllipticCurvePublicKey | None,
) -> VerifiedReceipt:
    if payload.get("eat_profile") != EAT_PROFILE:
        raise AttestationError(f"receipt profile is not {EAT_PROFILE}")
    try:
        submod = payload["submods"][_SUBMOD]
        task = submod["cloister.task"]
        raw_evidence = submod["cloister.evidence"]
        manifest = TaskManifest.from_json(submod["cloister.manifest"])
        evidence = Evidence(
            str(raw_evidence["tee_backend"]),
            _unb64(raw_evidence["quote"], "evidence quote"),
            _unb64(raw_evidence["signature"], "evidence signature"),
        )
        manifest_hash = bytes.fromhex(task["manifest_hash"])
        ear_status = str(submod["ear.status"])
        inputs = {str(k): str(v) for k, v in task["inputs"].items()}
        outputs = {str(k): str(v) for k, v in task["outputs"].items()}
        claimed_digest = raw_evidence["digest"]
        task_id, status = str(task["task_id"]), str(task["status"])
    except (KeyError, TypeError, AttributeError, ValueError, ManifestMismatchError) as exc:
        raise AttestationError(f"receipt claims are malformed: {exc}") from None
    if manifest.manifest_hash != manifest_hash:
        raise AttestationError("receipt's manifest does not hash to its manifest_hash")
    if manifest.task_id != task_id:
        raise AttestationError("receipt's manifest is of another task")
    if evidence_digest(evidence) != claimed_digest:
        raise AttestationError("receipt's evidence digest does not match its evidence")
    task_quote = QuoteBody.parse(evidence.quote)
    if task_quote.report_data != task_report_data(manifest_hash, public_key):
        raise AttestationError("task evidence does not bind this manifest and signing key")
    if (task_quote.mr_enclave, task_quote.mr_signer) != (cert_quote.mr_enclave, cert_quote.mr_signer):
        raise AttestationError("task evidence measures other code than the signing certificate")
    checked = False
    if quoting_key is not None:
        if evidence.tee_backend != "sim":
            raise AttestationError(f"a simulated quoting key cannot check {evidence.tee_backend!r} evidence")
        verify_simulated_evidence(evidence, quoting_key)
        checked = True
    return VerifiedReceipt(
        task_id=task_id,
        status=status,
        manifest_hash=manifest_hash,
        manifest=manifest,
        inputs=inputs,
        outputs=outputs,
        issued_at=issued_at,
        ear_status=ear_status,
        tee_backend=evidence.tee_backend,
        signer=signer,
        evidence_signature_checked=checked,
    )
