"""The VCEK of this SEV-SNP chip from AMD's Key Distribution Service, for hosts that supply no certificate table.

A VCEK is certified for one chip at one reported TCB, so it is looked up by the report's chip id
and reported TCB (``/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..``) and
cached under both: it changes only when the host's firmware does. The product (Milan, Genoa,
Turin) is read from the report's CPUID fields (report version 3 and later); an older report
names none, so Milan and then Genoa are asked. The attestation service checks the VCEK against
AMD's pinned roots: nothing here trusts what KDS answers, beyond it being a certificate.
"""

from __future__ import annotations

import logging
import struct
import threading

from cloister.attestation.hardware.snp import load_amd_certificate
from cloister.attestation.producers.remote import NotServedError, check_service_url, get_bounded
from cloister.errors import AttestationError

__all__ = ["AMDKeyDistribution", "kds_queries"]

logger = logging.getLogger(__name__)

MAX_VCEK_BYTES = 16 * 1024
"""A VCEK in DER is about 1.4 KB."""

_REPORT_LENGTH = 0x4A0
_REPORTED_TCB = slice(0x180, 0x188)
_CHIP_ID = slice(0x1A0, 0x1E0)
_CPUID = slice(0x188, 0x18B)  # family, model, stepping (report version 3 and later)


def _product(family: int, model: int) -> str | None:
    if family == 0x19 and model <= 0x0F:
        return "Milan"
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return "Genoa"
    if family == 0x1A and model <= 0x11:
        return "Turin"
    return None


def kds_queries(report: bytes) -> list[str]:
    """The KDS paths (with query) that may hold the VCEK for ``report``, most likely first.

    Raises:
        AttestationError: the report is not an SNP report, or its chip id is masked (all zero:
            the guest policy hides it, and only a VLEK from the host can verify such a report).
    """
    if len(report) != _REPORT_LENGTH:
        raise AttestationError(f"an SEV-SNP report is {_REPORT_LENGTH} bytes, got {len(report)}")
    (version,) = struct.unpack_from("<I", report, 0)
    chip_id = report[_CHIP_ID]
    if not any(chip_id):
        raise AttestationError(
            "the SEV-SNP report's chip id is masked, so no VCEK can be looked up for it: "
            "the host must supply a VLEK in its certificate table"
        )
    tcb = report[_REPORTED_TCB]
    family, model, _stepping = report[_CPUID]
    known = _product(family, model) if version >= 3 else None
    products = [known] if known else ["Milan", "Genoa"]  # Turin reports are version 3 or later
    paths = []
    for product in products:
        if product == "Turin":
            hwid = chip_id[:8].hex()
            spl = {"fmcSPL": tcb[0], "blSPL": tcb[1], "teeSPL": tcb[2], "snpSPL": tcb[3], "ucodeSPL": tcb[7]}
        else:
            hwid = chip_id.hex()
            spl = {"blSPL": tcb[0], "teeSPL": tcb[1], "snpSPL": tcb[6], "ucodeSPL": tcb[7]}
        query = "&".join(f"{name}={value:02d}" for name, value in spl.items())
        paths.append(f"/vcek/v1/{product}/{hwid}?{query}")
    return paths


class AMDKeyDistribution:
    """Fetches and caches this chip's VCEK from AMD's KDS.

    Args:
        base_url: AMD's KDS (or a cache in front of it), ``https`` (``http`` to loopback only).
        timeout_seconds: for connecting and each read.

    Raises:
        ConfigurationError: ``base_url`` is neither https nor loopback http.
    """

    def __init__(self, base_url: str, *, timeout_seconds: float = 10.0) -> None:
        self.base_url = check_service_url(base_url, "[attestation] amd_kds_url")
        self._timeout = timeout_seconds
        self._cache: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self.fetches = 0
        """How many VCEKs were fetched (not served from the cache)."""

    def vcek_for(self, report: bytes) -> bytes:
        """The DER VCEK certified for ``report``'s chip at its reported TCB.

        Raises:
            AttestationError: no VCEK can be looked up for the report, KDS has none for it (404 for
                every product), or it answered something that is not a certificate.
            UnavailableError: KDS cannot be reached, or is too slow or busy (429, 5xx).
        """
        paths = kds_queries(report)
        key = report[_CHIP_ID] + report[_REPORTED_TCB]
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            missing = []
            for path in paths:
                url = self.base_url + path
                try:
                    answer = get_bounded(url, what="the VCEK", max_bytes=MAX_VCEK_BYTES, timeout_seconds=self._timeout)
                except NotServedError:
                    if len(paths) > 1:  # the product was a guess: try the next
                        missing.append(url)
                        continue
                    raise
                try:
                    load_amd_certificate(answer.body)
                except ValueError:
                    raise AttestationError(f"{url} answered something that is not a certificate") from None
                self.fetches += 1
                self._cache[key] = answer.body
                return answer.body
            raise AttestationError(f"AMD's KDS has no VCEK for this chip: {', '.join(missing)} answered 404")

    def forget(self) -> None:
        """Drop the cached VCEKs, so that the next report's is fetched afresh."""
        with self._lock:
            self._cache.clear()
