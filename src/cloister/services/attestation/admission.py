"""Endorsements off the event loop, a bounded number at a time.

Any TLS client that trusts the attestation root CA can call Endorse: services call it before
they have an identity, so nothing can be asked of the caller first. Verifying hardware evidence
is CPU work (dcap-qvl's chain and CRL checks, RSA-PSS and ECDSA signatures) that would stop every
other call of the service while it ran on the event loop. So each endorsement runs in one of a
few worker threads, a bounded number wait for a thread, and a caller beyond that is refused at
once with RESOURCE_EXHAUSTED rather than queued without end: a flood costs its sender retries,
not the other callers their answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import functools
from collections.abc import Callable

from cloister.attestation.backends import Evidence
from cloister.errors import InvalidArgumentError, ResourceExhaustedError
from cloister.services.attestation.endorser import Endorsement, Endorser

__all__ = ["MAX_FIELD_BYTES", "EndorsementQueue"]

MAX_FIELD_BYTES = {
    "quote": 64 * 1024,
    "evidence_signature": 1024,
    "public_key": 1024,
    "certificates": 64 * 1024,
    "collateral": 4 * 1024 * 1024,
}
"""The largest value of each Endorse field: a quote or SNP report is a few kilobytes, a Nitro
document about 10 KB, a certificate table three certificates, Intel's collateral (two CRLs, two
signed documents, three chains) a few hundred kilobytes."""


class EndorsementQueue:
    """Runs :meth:`Endorser.endorse` in at most ``workers`` threads, with at most ``waiting`` calls waiting.

    Args:
        endorser: the attestation service's endorser.
        workers: endorsements verified at once, each in its own thread.
        waiting: endorsements that may wait for a thread; one more is refused.
    """

    def __init__(self, endorser: Endorser, workers: int, waiting: int) -> None:
        self._endorser = endorser
        self._capacity = workers + waiting
        self._pending = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="endorse")

    @property
    def pending(self) -> int:
        """Endorsements running or waiting."""
        return self._pending

    async def endorse(self, evidence: Evidence, public_key_der: bytes, service: str, now: dt.datetime) -> Endorsement:
        """:meth:`Endorser.endorse` in a worker thread.

        Raises:
            ResourceExhaustedError: every thread is busy and the waiting line is full.
            InvalidArgumentError: a field is larger than any genuine one (:data:`MAX_FIELD_BYTES`).
            AttestationError: as :meth:`Endorser.endorse`.
        """
        _check_sizes(evidence, public_key_der)
        if self._pending >= self._capacity:
            raise ResourceExhaustedError(
                f"the attestation service is busy verifying {self._pending} pieces of evidence; try again shortly"
            )
        loop = asyncio.get_running_loop()
        job = self._pool.submit(self._endorser.endorse, evidence, public_key_der, service, now)
        self._pending += 1  # only the event loop's thread counts, so no lock
        # Released when the work ends, not when the caller stops waiting: a cancelled call whose
        # verification is already running still holds its thread until it finishes.
        job.add_done_callback(functools.partial(_release_from_thread, loop, self._release))
        return await asyncio.wrap_future(job)

    def _release(self) -> None:
        self._pending -= 1

    def close(self) -> None:
        """Stop taking work; verifications under way finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _release_from_thread(
    loop: asyncio.AbstractEventLoop, release: Callable[[], None], _job: concurrent.futures.Future[Endorsement]
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody counts any more
        loop.call_soon_threadsafe(release)


def _check_sizes(evidence: Evidence, public_key_der: bytes) -> None:
    fields = {
        "quote": evidence.quote,
        "evidence_signature": evidence.signature,
        "public_key": public_key_der,
        "certificates": evidence.certificates,
        "collateral": evidence.collateral,
    }
    for name, value in fields.items():
        if len(value) > MAX_FIELD_BYTES[name]:
            raise InvalidArgumentError(
                f"{name} is {len(value)} bytes, more than the {MAX_FIELD_BYTES[name]} any genuine evidence needs"
            )
