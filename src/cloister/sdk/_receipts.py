"""A task's signed receipt as the SDK hands it out: fetched when first used, saved, checked offline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloister._proto import cloister_pb2 as cpb
from cloister.attestation.receipts import VerifiedReceipt, verify_receipt
from cloister.errors import AttestationError
from cloister.model.views import TimelineEntry
from cloister.rpc.convert.views import timeline_from_proto
from cloister.sdk._channel import CLOISTER_FRONTEND
from cloister.sdk._session import Caller
from cloister.sdk._trust import Trust


class Receipt:
    """A compact JWS signed by the execution service that ran the task (docs/tasks.md).

    The receipt carries the hash of the task's approved manifest, not the manifest; the frontend
    serves the manifest with it, and :meth:`verify` checks the one against the other.
    :meth:`TaskHandle.result` hands one out unfetched, so reading a result costs no extra call;
    the first use of :attr:`token` or :attr:`manifest` asks the frontend (GetTaskReceipt,
    participants only).
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        manifest: bytes | None = None,
        fetch: Callable[[], tuple[str, bytes]] | None = None,
    ) -> None:
        if token is None and fetch is None:
            raise ValueError("a receipt needs its token or a way to fetch it")
        self._token = token
        self._manifest = manifest
        self._fetch = fetch

    def __repr__(self) -> str:
        return f"Receipt({'fetched' if self._token is not None else 'not fetched'})"

    def _fetched(self) -> None:
        if self._token is not None:
            return
        assert self._fetch is not None
        token, manifest = self._fetch()
        if not token:
            raise AttestationError("the task has no receipt: it has not ended, or no execution service signed one")
        self._token, self._manifest = token, manifest or None

    @property
    def token(self) -> str:
        """The JWS text.

        Raises:
            AttestationError: the task has no receipt (it has not ended, or nothing signed one).
        """
        self._fetched()
        assert self._token is not None
        return self._token

    @property
    def manifest(self) -> bytes | None:
        """The task's approved manifest (canonical JSON) as the frontend served it with the
        receipt; None when it was made from a token alone. Trust it only after :meth:`verify`.

        Raises:
            AttestationError: the task has no receipt.
        """
        self._fetched()
        return self._manifest

    def verify(self, trust: Trust, *, at: dt.datetime | None = None) -> VerifiedReceipt:
        """What the receipt proves, checked against ``trust`` alone (no service is asked).

        With the manifest (fetched with the receipt, or given), it must hash to the receipt's
        ``manifest_hash``; the result's ``manifest`` is then that manifest, parsed.

        Raises:
            AttestationError: a check failed; the message says which.
        """
        token = self.token
        return verify_receipt(token, trust.as_root_ca, trust.enclave_info, trust.policy, at=at, manifest=self._manifest)

    def save(self, path: str | Path, manifest_path: str | Path | None = None) -> None:
        """Write the token to ``path`` and, given ``manifest_path``, the manifest's exact bytes there.

        Raises:
            AttestationError: a manifest path was given, but there is no manifest.
        """
        token = self.token
        if manifest_path is not None:
            if self._manifest is None:
                raise AttestationError("this receipt has no manifest to save")
            Path(manifest_path).write_bytes(self._manifest)
        Path(path).write_text(token + "\n", encoding="ascii")


@dataclass(frozen=True)
class ReceiptAnswer:
    """One GetTaskReceipt answer: the receipt and manifest (empty when there is none) and the timeline."""

    receipt: str
    manifest: bytes
    timeline: tuple[TimelineEntry, ...]


def fetch_receipt_answer(session: Caller, task_id: str) -> ReceiptAnswer:
    """Everything GetTaskReceipt answers about the task (participants only, like GetTask)."""
    request = cpb.GetTaskReceiptRequest(task_id=task_id)
    response = session.frontend("GetTaskReceipt", request, service=CLOISTER_FRONTEND)
    return ReceiptAnswer(str(response.receipt), bytes(response.manifest), timeline_from_proto(response.history))


def fetch_receipt(session: Caller, task_id: str) -> tuple[str, bytes]:
    """The task's receipt and approved manifest (participants only, like GetTask); empty when it has none."""
    answer = fetch_receipt_answer(session, task_id)
    return answer.receipt, answer.manifest
