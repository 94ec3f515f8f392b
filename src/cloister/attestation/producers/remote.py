"""Bounded GETs to the vendors' endorsement services: Intel's PCS (or a PCCS) and AMD's KDS.

What they answer is signed by Intel or AMD and checked by the attestation service against the
roots it pins, so nothing here trusts it. What this module bounds is what fetching can cost a
service: ``https`` only (plain ``http`` only to a loopback address, for a PCCS on the same host or
a test's stand-in), no redirects, no proxy or certificates from the environment, a timeout on
connecting and on every read, a deadline for the whole answer and a cap on its size. Every
error names the URL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cloister.config import AttestationSettings, is_loopback_host
from cloister.errors import AttestationError, ConfigurationError, UnavailableError

if TYPE_CHECKING:
    import httpx

__all__ = ["Answer", "EndorsementSources", "NotServedError", "check_service_url", "get_bounded"]

_DEADLINE_FACTOR = 3
"""The whole answer must arrive within this many timeouts, however it trickles in."""


class NotServedError(AttestationError):
    """The service answered 404: it has nothing at that URL (for KDS, perhaps another product's)."""


@dataclass(frozen=True)
class EndorsementSources:
    """Where a hardware backend fetches what verifying its evidence takes; an empty URL fetches nothing.

    Built from ``[attestation]`` by :meth:`from_settings`.
    """

    pccs_url: str = ""
    """Intel's PCS or a PCCS (the v4 API), for the collateral of SGX and TDX quotes."""
    amd_kds_url: str = ""
    """AMD's KDS, for the VCEK of an SEV-SNP chip whose host supplies none."""
    timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, attestation: AttestationSettings) -> EndorsementSources:
        return cls(attestation.pccs_url, attestation.amd_kds_url, attestation.collateral_timeout_seconds)


@dataclass(frozen=True)
class Answer:
    """A successful answer: the URL asked, the body and the headers."""

    url: str
    body: bytes
    headers: httpx.Headers


def check_service_url(url: str, setting: str) -> str:
    """``url`` without a trailing slash, if it is ``https`` or ``http`` to a loopback address.

    Raises:
        ConfigurationError: anything else, naming ``setting``.
    """
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        host, parts = "", urlsplit("")
    if (parts.scheme == "https" and host) or (parts.scheme == "http" and is_loopback_host(host)):
        return url
    raise ConfigurationError(
        f"{setting} {url!r} must be an https URL (plain http only to 127.0.0.1, ::1 or localhost): "
        "what it answers travels over networks the service does not control"
    )


def get_bounded(url: str, *, what: str, max_bytes: int, timeout_seconds: float) -> Answer:
    """GET ``url`` and return the answer if it is 200 and at most ``max_bytes`` long.

    Args:
        url: an ``https`` URL, or ``http`` to a loopback address.
        what: what is being fetched, for messages ("the TCB info").
        max_bytes: the largest body accepted.
        timeout_seconds: for connecting and for each read; the whole answer gets three times that.

    Raises:
        ConfigurationError: the URL is neither https nor loopback http.
        UnavailableError: the service cannot be reached, is too slow, or answers 429 or 5xx: try again later.
        AttestationError: any other status (404: :class:`NotServedError`), or a body over ``max_bytes``.
    """
    parts = urlsplit(url)
    if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname or ""))):
        raise ConfigurationError(f"refusing to fetch {what} from {url}: only https (or http to loopback) is allowed")
    import httpx  # here, not at the top: importing httpx costs every service's start 0.1 s of CPU (it loads its CLI)

    timeout = httpx.Timeout(timeout_seconds)
    deadline = time.monotonic() + _DEADLINE_FACTOR * timeout_seconds
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
        ):
            if response.status_code != 200:
                _refuse_status(response.status_code, url, what)
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > max_bytes:
                raise AttestationError(
                    f"{url} answered {what} of {announced} bytes, more than the {max_bytes} bytes allowed"
                )
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > max_bytes:
                    raise AttestationError(f"{url} answered {what} of more than the {max_bytes} bytes allowed")
                if time.monotonic() > deadline:
                    raise UnavailableError(f"{url} took longer than {deadline_text(timeout_seconds)} to answer {what}")
            return Answer(url, bytes(body), response.headers)
    except httpx.TimeoutException:
        raise UnavailableError(f"could not fetch {what} from {url}: no answer within {timeout_seconds:g} s") from None
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UnavailableError(f"could not fetch {what} from {url}: {reason[:200]}") from None


def deadline_text(timeout_seconds: float) -> str:
    return f"{_DEADLINE_FACTOR * timeout_seconds:g} s"


def _refuse_status(status: int, url: str, what: str) -> None:
    if status == 429 or status >= 500:
        raise UnavailableError(f"could not fetch {what} from {url}: it answered HTTP {status}; try again later")
    if status == 404:
        raise NotServedError(f"{url} answered HTTP 404 (not found) for {what}")
    if 300 <= status < 400:
        raise AttestationError(f"{url} answered {what} with a redirect (HTTP {status}), which is not followed")
    raise AttestationError(f"{url} refused to give {what} (HTTP {status})")
