"""Task receipts: what an execution service ran, signed by the key its attested certificate binds.

A receipt is a compact JWS (ES256) whose payload follows IETF EAR (EAT Attestation Results):
``eat_profile``, ``iat``, ``ear.verifier-id`` and one submodule, ``execution``, with its
``ear.status`` and Cloister's claims under ``cloister.*``: the task, the hash of its approved
manifest with a few small digests of its parts, the inputs' and outputs' cmacs, and the evidence
the TEE backend produced for this task, whose report data is the manifest hash followed by the
SHA-256 of the signing key (:func:`task_report_data`), with what verifying it needs (Intel's
collateral, the SEV-SNP host's certificate table). The header's ``x5c`` carries the
service's attested certificate. The manifest itself is not in the receipt, so a receipt's size
does not grow with the task's arguments: a participant gets the manifest apart from it and
checks it against the hash (``verify_receipt(..., manifest=...)``).

PyJWT (already a dependency) signs and checks the signature with the algorithm pinned to ES256,
so neither ``none`` nor an HMAC with the public key can be slipped in. Checking a receipt
(:func:`verify_receipt`) needs only the deployment's trust files: the certificate's report must
chain to the attestation root CA, bind the certificate's key, and carry the execution service's
measurements from ``enclave_info.toml``; hardware evidence is verified to its vendor's pinned
root as of the receipt's time, and must measure the same code; everything else follows from the
signature. Each
base64url segment must be in its one canonical form, so no changed byte goes unnoticed, and
whatever is malformed is refused with :class:`AttestationError`, never another exception.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloister.attestation.backends import Evidence
from cloister.attestation.certificate import ec_public_key_of
from cloister.attestation.enclave_info import EnclaveInfo
from cloister.attestation.hardware.evidence import quote_body_of, verify_evidence
from cloister.attestation.measurement import enclave_name
from cloister.attestation.quote import QuoteBody
from cloister.attestation.report import AttestationPolicy, load_der_certificate
from cloister.attestation.sim import verify_simulated_evidence
from cloister.attestation.verify import verify_attested_certificate
from cloister.errors import AttestationError
from cloister.model.manifest import ManifestMismatchError, TaskManifest

EAT_PROFILE = "tag:cloister.dev,2026:task-receipt/v1"
VERIFIER_ID = {"developer": "cloister", "build": "cloister-execution"}
MAX_RECEIPT_CHARS = 128 * 1024
"""The longest receipt signed, stored or checked. Without the manifest a receipt is a few
kilobytes (the certificate and the evidence) plus about 100 characters per input and output;
an SGX or TDX quote's collateral adds about 30 KiB."""
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
    if not isinstance(text, str):
        raise AttestationError(f"receipt: {what} is not a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"receipt: {what} is not base64") from None
    if _b64(raw) != text:  # unused bits set in the last character: another text for the same bytes
        raise AttestationError(f"receipt: {what} is not in canonical base64")
    return raw


def _task_claims(
    manifest: TaskManifest, status: str, inputs: Mapping[str, bytes], outputs: Mapping[str, bytes]
) -> dict[str, Any]:
    return {
        "task_id": manifest.task_id,
        "status": status,
        "manifest_hash": manifest.manifest_hash.hex(),
        # Small digests of the manifest's parts, so a receipt alone says what was agreed.
        "terms_hash": manifest.terms_hash,
        "function": {"id": manifest.function_id, "payload_sha256": manifest.payload_sha256},
        "arguments_sha256": manifest.arguments_sha256,
        "inputs": {name: tag.hex() for name, tag in sorted(inputs.items())},
        "outputs": {name: tag.hex() for name, tag in sorted(outputs.items())},
    }


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
    """A receipt for a task that ended with ``status`` ("Finished" or "Failed").

    Raises:
        ValueError: it would be longer than :data:`MAX_RECEIPT_CHARS` (thousands of inputs and
            outputs); nobody would store or accept it.
    """
    claims = {
        "eat_profile": EAT_PROFILE,
        "iat": issued_at,
        "ear.verifier-id": VERIFIER_ID,
        "submods": {
            _SUBMOD: {
                # EAR's four-level verdict on the attester: a simulated hardware root is a warning.
                "ear.status": "warning" if simulated else "affirming",
                "cloister.task": _task_claims(manifest, status, inputs, outputs),
                "cloister.evidence": {
                    "tee_backend": evidence.tee_backend,
                    "simulated": simulated,
                    "quote": _b64(evidence.quote),
                    "signature": _b64(evidence.signature),
                    "digest": evidence_digest(evidence),
                    # What verifying hardware evidence needs, so the receipt is checkable offline.
                    **({"collateral": _b64(evidence.collateral)} if evidence.collateral else {}),
                    **({"certificates": _b64(evidence.certificates)} if evidence.certificates else {}),
                },
            }
        },
    }
    headers = {"typ": _TYPE, "x5c": [_b64(certificate_der)]}
    token = jwt.encode(claims, key, algorithm="ES256", headers=headers)
    if len(token) > MAX_RECEIPT_CHARS:
        raise ValueError(f"the receipt would be {len(token)} characters, over the limit of {MAX_RECEIPT_CHARS}")
    return token


@dataclass(frozen=True)
class VerifiedReceipt:
    task_id: str
    status: str
    manifest_hash: bytes
    terms_hash: str
    """SHA-256 (hex) of the manifest's terms: what each participant's approval binds."""
    function_id: str
    payload_sha256: str
    arguments_sha256: str
    """SHA-256 (hex) of the arguments' canonical JSON (``TaskManifest.arguments_sha256``)."""
    manifest: TaskManifest | None
    """The manifest, when one was given and checked against ``manifest_hash``; None otherwise."""
    inputs: dict[str, str]
    outputs: dict[str, str]
    issued_at: dt.datetime
    ear_status: str
    tee_backend: str
    signer: str
    """The enclave_info identity of the service that signed it."""
    evidence_signature_checked: bool
    """Whether the task evidence's own signature was checked: always for hardware evidence (to its
    vendor's root), for simulated evidence only with the ``sim`` backend's quoting key."""


def _canonical_segments(token: str) -> list[bytes]:
    if len(token) > MAX_RECEIPT_CHARS:
        raise AttestationError(f"receipt is longer than {MAX_RECEIPT_CHARS} characters")
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


def _without_newline(data: bytes) -> bytes:
    return data[:-1] if data.endswith(b"\n") else data


def read_receipt_text(data: bytes) -> str:
    """The token in a receipt file: ASCII, with at most one trailing newline."""
    try:
        return _without_newline(data).decode("ascii")
    except UnicodeDecodeError:
        raise AttestationError("receipt is not ASCII text") from None


def read_manifest_file(data: bytes) -> bytes:
    """The manifest in a manifest file: its canonical bytes, as GetTaskReceipt serves them and
    ``cloister receipt get --manifest`` saves them, with at most one trailing newline."""
    return _without_newline(data)


def verify_receipt(
    token: str,
    root: x509.Certificate,
    enclave_info: EnclaveInfo,
    policy: AttestationPolicy,
    *,
    at: dt.datetime | None = None,
    quoting_key: ec.EllipticCurvePublicKey | None = None,
    manifest: bytes | None = None,
) -> VerifiedReceipt:
    """Check a receipt offline against a deployment's trust files.

    The signing certificate and its report are checked as of ``at`` (default: the receipt's own
    ``iat``, so a receipt stays checkable after its short-lived certificate expires), and so is
    hardware task evidence (SGX, TDX, SEV-SNP, Nitro), to its vendor's pinned root. With
    ``quoting_key`` (the ``sim`` backend's public quoting key) simulated task evidence's
    signature is checked too. With ``manifest`` (its canonical bytes, as GetTaskReceipt serves them) the
    manifest must hash to the receipt's ``manifest_hash`` and agree with its digests; it is then
    returned parsed, so a participant can compare it with the terms they approved.

    Raises:
        AttestationError: saying which check failed; nothing in the receipt may be trusted then.
    """
    header_raw, payload_raw, _ = _canonical_segments(token)
    try:
        header = json.loads(header_raw)
        payload = json.loads(payload_raw)
    except (ValueError, RecursionError):
        raise AttestationError("receipt header or payload is not JSON") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise AttestationError("receipt header or payload is not a JSON object")
    if header.get("alg") != "ES256" or header.get("typ") != _TYPE or set(header) != {"alg", "typ", "x5c"}:
        raise AttestationError("receipt is not an ES256-signed Cloister receipt")
    chain = header["x5c"]
    if not isinstance(chain, list) or len(chain) != 1:
        raise AttestationError("receipt must carry exactly one certificate in x5c")
    cert_der = _unb64(chain[0], "x5c certificate")
    public_key = _signing_key(cert_der)
    # The signature first: any changed byte of the token stops here, before the certificate's
    # report and the claims (whoever wrote them) are looked at.
    try:
        jwt.PyJWS().decode_complete(token, public_key, algorithms=["ES256"])
    except jwt.InvalidTokenError:
        raise AttestationError("receipt signature does not verify under its certificate's key") from None
    issued = payload.get("iat")
    if not isinstance(issued, int) or isinstance(issued, bool):
        raise AttestationError("receipt has no integer iat")
    try:
        issued_at = dt.datetime.fromtimestamp(issued, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise AttestationError("receipt's iat is not a time") from None
    try:
        attested = verify_attested_certificate(cert_der, root, policy, at or issued_at)
    except (ValueError, TypeError, KeyError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        # A damaged report inside the certificate: whatever layer noticed it, nothing is trusted.
        raise AttestationError(f"receipt certificate's report is malformed ({type(exc).__name__})") from None
    cert = attested.certificate
    if not cert.not_valid_before_utc <= issued_at <= cert.not_valid_after_utc:
        raise AttestationError("receipt was issued outside its certificate's validity period")
    quote = attested.report.quote
    signer = enclave_info.identify(attested.report, [enclave_name("execution")]).name
    verified = _check_claims(payload, public_key, quote, attested.report.tee_backend, issued_at, signer, quoting_key)
    if manifest is None:
        return verified
    return _with_manifest(verified, manifest)


def _signing_key(cert_der: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 key of the receipt's certificate, parsed as far as the verifier will read it."""
    parsed = load_der_certificate(cert_der, "receipt certificate")
    try:  # cryptography parses the rest lazily: a damaged certificate can fail at any of these
        _ = parsed.extensions, parsed.not_valid_before_utc, parsed.not_valid_after_utc
        return ec_public_key_of(parsed)
    except (ValueError, x509.InvalidVersion, x509.DuplicateExtension, UnsupportedAlgorithm):
        raise AttestationError("receipt certificate is not a valid DER certificate") from None


def _check_claims(
    payload: dict[str, Any],
    public_key: ec.EllipticCurvePublicKey,
    cert_quote: QuoteBody,
    cert_backend: str,
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
        evidence = Evidence(
            str(raw_evidence["tee_backend"]),
            _unb64(raw_evidence["quote"], "evidence quote"),
            _unb64(raw_evidence["signature"], "evidence signature"),
            _unb64(raw_evidence.get("certificates", ""), "evidence certificates"),
            _unb64(raw_evidence.get("collateral", ""), "evidence collateral"),
        )
        manifest_hash = bytes.fromhex(task["manifest_hash"])
        if len(manifest_hash) != 32:
            raise ValueError("manifest_hash is not 32 bytes")
        function = task["function"]
        digests = {
            "terms_hash": str(task["terms_hash"]),
            "function_id": str(function["id"]),
            "payload_sha256": str(function["payload_sha256"]),
            "arguments_sha256": str(task["arguments_sha256"]),
        }
        ear_status = str(submod["ear.status"])
        inputs = {str(k): str(v) for k, v in task["inputs"].items()}
        outputs = {str(k): str(v) for k, v in task["outputs"].items()}
        claimed_digest = raw_evidence["digest"]
        task_id, status = str(task["task_id"]), str(task["status"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise AttestationError(f"receipt claims are malformed: {exc}") from None
    if evidence_digest(evidence) != claimed_digest:
        raise AttestationError("receipt's evidence digest does not match its evidence")
    if evidence.tee_backend != cert_backend:
        raise AttestationError(
            f"task evidence is {evidence.tee_backend!r} but the signing certificate was attested on {cert_backend!r}"
        )
    task_quote, checked = _task_quote(evidence, issued_at, quoting_key)
    if task_quote.report_data != task_report_data(manifest_hash, public_key):
        raise AttestationError("task evidence does not bind this manifest and signing key")
    if (task_quote.mr_enclave, task_quote.mr_signer) != (cert_quote.mr_enclave, cert_quote.mr_signer):
        raise AttestationError("task evidence measures other code than the signing certificate")
    return VerifiedReceipt(
        task_id=task_id,
        status=status,
        manifest_hash=manifest_hash,
        **digests,
        manifest=None,
        inputs=inputs,
        outputs=outputs,
        issued_at=issued_at,
        ear_status=ear_status,
        tee_backend=evidence.tee_backend,
        signer=signer,
        evidence_signature_checked=checked,
    )


def _task_quote(
    evidence: Evidence, issued_at: dt.datetime, quoting_key: ec.EllipticCurvePublicKey | None
) -> tuple[QuoteBody, bool]:
    """The task evidence as a quote body (hardware measurements mapped as the attestation service
    maps them), and whether its signature was checked.

    Hardware evidence is always verified, as of the receipt's time: its report data and
    measurements mean nothing otherwise. Simulated evidence is signed by the deployment's quoting
    key, which only a ``quoting_key`` can check.
    """
    if evidence.tee_backend != "sim":
        claims = verify_evidence(evidence, at=issued_at)
        if len(claims.report_data) != 64:  # no task's: those are a manifest hash and a key hash
            raise AttestationError("task evidence does not bind this manifest and signing key")
        return quote_body_of(claims), True
    try:
        body = QuoteBody.parse(evidence.quote)
    except ValueError as exc:
        raise AttestationError(f"receipt claims are malformed: {exc}") from None
    if quoting_key is None:
        return body, False
    verify_simulated_evidence(evidence, quoting_key)
    return body, True


def _with_manifest(verified: VerifiedReceipt, raw: bytes) -> VerifiedReceipt:
    """``verified`` with the manifest ``raw``, once it is the one the receipt's hash names."""
    if hashlib.sha256(raw).digest() != verified.manifest_hash:
        raise AttestationError(
            "the manifest does not hash to the receipt's manifest_hash: it is not the one this task ran under"
        )
    try:
        manifest = TaskManifest.from_bytes(raw)
        canonical = manifest.to_bytes() == raw
    except (ManifestMismatchError, ValueError, RecursionError):
        raise AttestationError("the manifest that hashes to manifest_hash is not a manifest") from None
    if not canonical:  # the execution service signs only canonical manifests; fail closed anyway
        raise AttestationError("the manifest is not in its canonical encoding")
    claimed = (verified.task_id, verified.terms_hash, verified.function_id, verified.payload_sha256)
    actual = (manifest.task_id, manifest.terms_hash, manifest.function_id, manifest.payload_sha256)
    if claimed != actual or verified.arguments_sha256 != manifest.arguments_sha256:
        raise AttestationError("the receipt's digests disagree with its manifest")
    participants = set(manifest.participants)
    if not participants or any(manifest.approvals.get(user) != manifest.terms_hash for user in participants):
        raise AttestationError("the manifest lacks a participant's approval of its terms")
    if verified.inputs != {name: str(value.get("cmac")) for name, value in manifest.inputs.items()}:
        raise AttestationError("the receipt's input cmacs are not those its manifest approved")
    if not set(verified.outputs) <= set(manifest.outputs):
        raise AttestationError("the receipt names outputs its manifest does not have")
    return replace(verified, manifest=manifest)
