"""Intel SGX (quote v3) and TDX (quote v4) evidence, verified with ``dcap-qvl`` against PCS collateral.

``dcap-qvl`` checks the quote's PCK chain up to Intel's SGX root, the CRLs, the TCB info and QE
identity signatures and dates, and the quote's own signature, and rates the TCB. It does not say
when the collateral stops being valid, so the window is read here from the same collateral, and
the debug bits are read from the verified report body.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import dcap_qvl
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from cloister.attestation.hardware.claims import Claims, Platform, TCBStatus, evidence_digest, require_aware
from cloister.attestation.report import nonpositive_serials_refused
from cloister.errors import AttestationError

__all__ = ["verify_sgx", "verify_tdx"]

_SGX_DEBUG = 0x02  # ATTRIBUTES.FLAGS bit 1
_TD_DEBUG = 0x01  # TDATTRIBUTES bit 0 (TUD.DEBUG)


def verify_sgx(quote: bytes, *, collateral: bytes | str, at: dt.datetime, root_der: bytes | None = None) -> Claims:
    """Claims of an SGX DCAP quote, verified at ``at`` with its PCS collateral (dcap-qvl's JSON).

    Args:
        quote: the raw quote.
        collateral: ``QuoteCollateralV3`` as JSON.
        at: the time to verify at.
        root_der: Intel's SGX root CA to chain to; None: the one ``dcap-qvl`` pins.

    Raises:
        AttestationError: with the reason, when anything does not verify or the quote is not SGX.
    """
    return _verify(quote, collateral, at, root_der, "sgx")


def verify_tdx(quote: bytes, *, collateral: bytes | str, at: dt.datetime, root_der: bytes | None = None) -> Claims:
    """Claims of a TDX DCAP quote; as :func:`verify_sgx`."""
    return _verify(quote, collateral, at, root_der, "tdx")


def _verify(
    quote: bytes, collateral: bytes | str, at: dt.datetime, root_der: bytes | None, platform: Platform
) -> Claims:
    at = require_aware(at)
    try:
        text = collateral.decode() if isinstance(collateral, bytes) else collateral
    except UnicodeDecodeError:
        raise AttestationError("the collateral is not UTF-8 text (dcap-qvl's QuoteCollateralV3 JSON)") from None
    try:
        parsed = dcap_qvl.parse_quote(quote)
    except ValueError as exc:
        raise AttestationError(f"not a DCAP quote: {exc}") from None
    kind = "tdx" if parsed.is_tdx() else "sgx"
    if kind != platform:
        raise AttestationError(f"this is a {kind.upper()} quote, not {platform.upper()}")
    try:
        loaded = dcap_qvl.QuoteCollateralV3.from_json(text)
    except ValueError as exc:
        raise AttestationError(f"the collateral is not dcap-qvl's QuoteCollateralV3 JSON: {exc}") from None
    seconds = int(at.timestamp())
    if seconds < 0:
        raise AttestationError(f"cannot verify a quote at {at.isoformat()}, before 1970")
    try:
        if root_der is None:
            verified = dcap_qvl.verify(quote, loaded, seconds)
        else:
            verified = dcap_qvl.verify_with_root_ca(quote, loaded, root_der, seconds)
    except ValueError as exc:
        raise AttestationError(
            f"{platform.upper()} quote does not verify at {at.isoformat()}: {_one_line(exc)}"
        ) from None
    try:
        status = TCBStatus.parse(verified.status)
    except ValueError:
        raise AttestationError(f"unknown TCB status {verified.status!r} from dcap-qvl; refused") from None
    # The body is read from the quote that just verified: dcap-qvl parses the same bytes.
    report = json.loads(verified.to_json())["report"]
    try:
        with nonpositive_serials_refused(f"{platform.upper()} quote's certificate chain"):
            not_before, not_after = _window(json.loads(text), parsed.cert_chain_pem_bytes() or b"")
    except (ValueError, KeyError, TypeError, AttributeError, x509.InvalidVersion, UnsupportedAlgorithm):
        # dcap-qvl does not read every certificate given (it ignores the root in the quote's
        # chain, pinning its own), so what it accepted may still not parse here.
        raise AttestationError(f"{platform.upper()} quote: a certificate, CRL or date in it does not parse") from None
    details = {"FMSPC": parsed.fmspc(), "quote version": str(parsed.header.version)}
    common: dict[str, Any] = {
        "tcb_status": status,
        "advisories": tuple(verified.advisory_ids),
        "not_before": not_before,
        "not_after": not_after,
        "evidence_digest": evidence_digest(quote),
        "details": details,
    }
    if platform == "sgx":
        body = report.get("SgxEnclave")
        if body is None:
            raise AttestationError("SGX quote without an enclave report")
        attributes = bytes.fromhex(body["attributes"])
        return Claims(
            platform="sgx",
            measurements={
                "mr_enclave": bytes.fromhex(body["mr_enclave"]),
                "mr_signer": bytes.fromhex(body["mr_signer"]),
            },
            report_data=bytes.fromhex(body["report_data"]),
            debug=bool(attributes[0] & _SGX_DEBUG),
            tcb_levels={"isv_prod_id": int(body["isv_prod_id"]), "isv_svn": int(body["isv_svn"])},
            **common,
        )
    body = next(iter(report.values()))
    td_attributes = bytes.fromhex(body["td_attributes"])
    names = ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3", "mr_seam", "mr_config_id", "mr_owner", "mr_owner_config")
    return Claims(
        platform="tdx",
        measurements={name.replace("rt_mr", "rtmr"): bytes.fromhex(body[name]) for name in names},
        report_data=bytes.fromhex(body["report_data"]),
        debug=bool(td_attributes[0] & _TD_DEBUG),
        **common,
    )


def _window(collateral: dict[str, Any], pck_chain_pem: bytes) -> tuple[dt.datetime, dt.datetime]:
    """The latest start and the earliest end among the collateral's documents, CRLs and certificates."""
    starts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    for name in ("tcb_info", "qe_identity"):
        document = json.loads(collateral[name])
        document = document.get("tcbInfo") or document.get("enclaveIdentity") or document
        starts.append(_rfc3339(document["issueDate"]))
        ends.append(_rfc3339(document["nextUpdate"]))
    for name in ("root_ca_crl", "pck_crl"):
        crl = x509.load_der_x509_crl(_bytes(collateral[name]))
        starts.append(crl.last_update_utc)
        if crl.next_update_utc is not None:
            ends.append(crl.next_update_utc)
    chains = [
        collateral[n].encode() for n in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain")
    ]
    for certificate in _certificates([*chains, pck_chain_pem]):
        starts.append(certificate.not_valid_before_utc)
        ends.append(certificate.not_valid_after_utc)
    return max(starts), min(ends)


def _certificates(chains: Iterable[bytes]) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for chain in chains:
        if chain.strip():
            found += x509.load_pem_x509_certificates(chain)
    return found


def _bytes(value: str | list[int]) -> bytes:
    return bytes(value) if isinstance(value, list) else bytes.fromhex(value)


def _rfc3339(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
