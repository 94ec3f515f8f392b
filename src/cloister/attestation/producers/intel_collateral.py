"""Intel's collateral for this platform's SGX and TDX quotes, from a PCCS or Intel's PCS (the v4 API).

Verifying a DCAP quote takes, besides the quote: the PCK CRL and the root CA's CRL, the TCB info
for the platform's FMSPC and the quoting enclave's identity, each signed by Intel, with their
issuers' chains. All of it is per platform (FMSPC and PCK CA), not per quote, and Intel reissues
it about monthly, so it is cached: reused for a day, or until an hour before the earliest
``nextUpdate`` in it, and forgotten when the attestation service refuses evidence. If the PCCS is
unreachable when the cache is due, the cached collateral serves while it is still valid.

Why not ``dcap_qvl.get_collateral``: it takes no timeout of ours (its own is 180 s), no cap on
an answer's size, and follows the CRL URL found in an unverified certificate for the root CA's
CRL; this client does none of that. What it returns is dcap-qvl's ``QuoteCollateralV3`` JSON,
which the attestation service's verifier reads.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cloister.attestation.producers.remote import Answer, check_service_url, get_bounded
from cloister.config import INTEL_PCS_URL
from cloister.errors import AttestationError, CloisterError

__all__ = ["INTEL_ROOT_CA_CRL_URL", "IntelCollateral"]

logger = logging.getLogger(__name__)

INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
"""Where Intel publishes its SGX root CA's CRL; Intel's PCS serves it nowhere under its API."""
MAX_ANSWER_BYTES = 1024 * 1024
"""A TCB info or a CRL is tens of kilobytes; a megabyte leaves room and stops a flood."""
REFRESH_AFTER = dt.timedelta(days=1)
NEAR_EXPIRY = dt.timedelta(hours=1)

_FMSPC = re.compile(r"[0-9A-Fa-f]{12}")
_CAS = ("processor", "platform")
_WS = " \t\n\r"


@dataclass(frozen=True)
class _Cached:
    collateral: bytes
    refresh_at: dt.datetime
    not_after: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class IntelCollateral:
    """Fetches and caches the collateral for quotes of this platform.

    Args:
        base_url: a PCCS or Intel's PCS, ``https`` (``http`` to loopback only).
        timeout_seconds: for connecting and each read of every answer.
        clock: the current time (tests pin it inside the fixtures' window).

    Raises:
        ConfigurationError: ``base_url`` is neither https nor loopback http.
    """

    def __init__(
        self, base_url: str, *, timeout_seconds: float = 10.0, clock: Callable[[], dt.datetime] = _now
    ) -> None:
        self.base_url = check_service_url(base_url, "[attestation] pccs_url")
        for suffix in ("/sgx/certification/v4", "/tdx/certification/v4"):
            self.base_url = self.base_url.removesuffix(suffix)
        self._timeout = timeout_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str, str], _Cached] = {}
        self._lock = threading.Lock()
        self.fetches = 0
        """How many times collateral was fetched (not served from the cache)."""

    def for_quote(self, quote: bytes) -> bytes:
        """The collateral for ``quote`` as dcap-qvl's ``QuoteCollateralV3`` JSON.

        Raises:
            AttestationError: the quote does not name its platform, or the PCCS answered with
                something that is not collateral (each message names the URL).
            UnavailableError: the PCCS cannot be reached and nothing valid is cached.
        """
        tee, fmspc, ca = _platform_of(quote)
        key = (tee, fmspc, ca)
        with self._lock:  # one fetch at a time: a second caller then finds the first one's answer
            cached = self._cache.get(key)
            now = self._clock()
            if cached is not None and now < cached.refresh_at:
                return cached.collateral
            try:
                fresh = self._fetch(tee, fmspc, ca, now)
            except CloisterError as exc:
                if cached is not None and now < cached.not_after:
                    logger.warning("keeping cached collateral (valid until %s): %s", cached.not_after, exc.message)
                    return cached.collateral
                raise
            self.fetches += 1
            self._cache[key] = fresh
            return fresh.collateral

    def forget(self) -> None:
        """Drop every cached collateral, so that the next quote's is fetched afresh."""
        with self._lock:
            self._cache.clear()

    def _fetch(self, tee: str, fmspc: str, ca: str, now: dt.datetime) -> _Cached:
        api = f"{self.base_url}/sgx/certification/v4"
        tee_api = f"{self.base_url}/{tee}/certification/v4"
        pck_crl_answer = self._get(f"{api}/pckcrl?ca={ca}&encoding=der", "the PCK CRL")
        pck_crl = _crl(pck_crl_answer)
        pck_crl_chain = _issuer_chain(pck_crl_answer, "SGX-PCK-CRL-Issuer-Chain")
        tcb_answer = self._get(f"{tee_api}/tcb?fmspc={fmspc}", "the TCB info")
        tcb_info, tcb_signature = _signed_document(tcb_answer, "tcbInfo")
        tcb_chain = _issuer_chain(tcb_answer, "TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
        qe_answer = self._get(f"{tee_api}/qe/identity?update=standard", "the QE identity")
        qe_identity, qe_signature = _signed_document(qe_answer, "enclaveIdentity")
        qe_chain = _issuer_chain(qe_answer, "SGX-Enclave-Identity-Issuer-Chain")
        root_url = INTEL_ROOT_CA_CRL_URL if self.base_url == INTEL_PCS_URL else f"{api}/rootcacrl"
        root_crl = _crl(self._get(root_url, "the root CA's CRL"))
        collateral = dcap_qvl.QuoteCollateralV3(
            pck_crl_chain,
            root_crl.public_bytes_der,
            pck_crl.public_bytes_der,
            tcb_chain,
            tcb_info.raw,
            tcb_signature,
            qe_chain,
            qe_identity.raw,
            qe_signature,
        )
        not_after = min(tcb_info.next_update, qe_identity.next_update, pck_crl.next_update, root_crl.next_update)
        refresh_at = min(now + REFRESH_AFTER, not_after - NEAR_EXPIRY)
        return _Cached(collateral.to_json().encode(), refresh_at, not_after)

    def _get(self, url: str, what: str) -> Answer:
        return get_bounded(url, what=what, max_bytes=MAX_ANSWER_BYTES, timeout_seconds=self._timeout)


def _platform_of(quote: bytes) -> tuple[str, str, str]:
    """(``sgx`` or ``tdx``, FMSPC, PCK CA) of a quote that carries its PCK certificate chain."""
    try:
        parsed = dcap_qvl.parse_quote(quote)
        tee = "tdx" if parsed.is_tdx() else "sgx"
        if not parsed.cert_chain_pem_bytes():
            raise AttestationError(
                "the quote does not carry its PCK certificate chain (certification data type 5), so its "
                "collateral cannot be looked up: configure the quote provider library to embed it"
            )
        fmspc, ca = parsed.fmspc(), parsed.ca().lower()
    except ValueError as exc:
        raise AttestationError(f"cannot read the platform (FMSPC, PCK CA) from the quote: {exc}") from None
    if not _FMSPC.fullmatch(fmspc) or ca not in _CAS:
        raise AttestationError(f"the quote names FMSPC {fmspc[:24]!r} and PCK CA {ca[:24]!r}, which are not valid")
    return tee, fmspc.upper(), ca


@dataclass(frozen=True)
class _CRL:
    public_bytes_der: bytes
    next_update: dt.datetime


def _crl(answer: Answer) -> _CRL:
    """A CRL in DER, PEM, or hex of DER (as some PCCS versions serve the root CA's)."""
    body = answer.body
    try:
        if body.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(body.strip())
        elif body[:1] == b"\x30":
            crl = x509.load_der_x509_crl(body)
        else:
            crl = x509.load_der_x509_crl(bytes.fromhex(body.decode("ascii")))
        next_update = crl.next_update_utc
    except (ValueError, UnicodeDecodeError):
        raise AttestationError(f"{answer.url} answered something that is not a CRL") from None
    if next_update is None:
        raise AttestationError(f"{answer.url} answered a CRL without a next update")
    return _CRL(crl.public_bytes(Encoding.DER), next_update)


def _issuer_chain(answer: Answer, *names: str) -> str:
    """The URL-encoded PEM chain in the first of the headers ``names`` that is present."""
    value = next((answer.headers[name] for name in names if name in answer.headers), None)
    if value is None:
        raise AttestationError(f"{answer.url} answered without the {names[0]} header")
    chain = unquote(value)
    try:
        if not x509.load_pem_x509_certificates(chain.encode()):
            raise ValueError
    except ValueError:
        raise AttestationError(f"{answer.url}: the {names[0]} header is not a PEM certificate chain") from None
    return chain


@dataclass(frozen=True)
class _Document:
    raw: str
    """Exactly the bytes Intel signed, as they appeared in the answer."""
    next_update: dt.datetime


def _signed_document(answer: Answer, member: str) -> tuple[_Document, bytes]:
    """The ``member`` of an answer ``{"<member>": {...}, "signature": "<hex>"}``, as the text that was signed.

    Intel signs the member's bytes as they are in the answer, so they are cut out of it, never
    parsed and written again.
    """
    try:
        members = _raw_members(answer.body.decode("utf-8"))
        document = json.loads(members[member])
        signature = bytes.fromhex(json.loads(members["signature"]))
        next_update = dt.datetime.fromisoformat(document["nextUpdate"].replace("Z", "+00:00")).astimezone(dt.UTC)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise AttestationError(
            f"{answer.url} answered something that is not Intel's signed {member} with its signature"
        ) from None
    return _Document(members[member], next_update), signature


def _raw_members(text: str) -> dict[str, str]:
    """The members of the JSON object ``text``, each value as its raw text.

    Raises:
        ValueError: ``text`` is not one JSON object.
    """
    decoder = json.JSONDecoder()
    members: dict[str, str] = {}
    position = _skip(text, 0)
    if text[position : position + 1] != "{":
        raise ValueError("not a JSON object")
    position = _skip(text, position + 1)
    if text[position : position + 1] == "}":
        return members
    while True:
        key, position = decoder.raw_decode(text, position)
        position = _skip(text, position)
        if not isinstance(key, str) or text[position : position + 1] != ":":
            raise ValueError("not a JSON object")
        start = _skip(text, position + 1)
        _, end = decoder.raw_decode(text, start)
        members[key] = text[start:end]
        position = _skip(text, end)
        if text[position : position + 1] == ",":
            position = _skip(text, position + 1)
            continue
        if text[position : position + 1] == "}" and _skip(text, position + 1) == len(text):
            return members
        raise ValueError("not one JSON object")


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in _WS:
        position += 1
    return position
