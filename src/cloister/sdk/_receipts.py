"""A task's signed receipt as the SDK hands it out: fetched when first used, saved, checked offline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from cloister._proto import cloister_pb2 as cpb
from cloister.attestation.receipts import VerifiedReceipt, verify_receipt
from cloister.errors import AttestationError
from cloister.sdk._channel import CLOISTER_FRONTEND
from cloister.sdk._session import Caller
from cloister.sdk._trust import Trust


class Receipt:
    """A compact JWS signed by the execution service that ran the task (docs/tasks.md).

    :meth:`TaskHandle.result` hands one out unfetched, so reading a result costs no extra call;
    the first use of :attr:`token` asks the frontend (GetTaskReceipt, participants only).
    """

    def __init__(self, token: str | None = None, *, fetch: Callable[[], str] | None = None) -> None:
        if token is None and fetch is None:
            raise ValueError("a receipt needs its token or a way to fetch it")
        self._token = token
        self._fetch = fetch

    def __repr__(self) -> str:
        return f"Receipt({'fetched' if self._token is not None else 'not fetched'})"

    @property
    def token(self) -> str:
        """The JWS text.

        Raises:
            AttestationError: the task has no receipt (it has not ended, or nothing signed one).
        """
        if self._token is None:
            assert self._fetch is not None
            self._token = self._fetch()
            if not self._token:
                self._token = None
                raise AttestationError("the task has no receipt: it has not ended, or no execution service signed one")
        return self._token

    def verify(self, trust: Trust, *, at: dt.datetime | None = None) -> VerifiedReceipt:
        """What the receipt proves, checked against ``trust`` alone (no service is asked).

        Raises:
            AttestationError: a check failed; the message says which.
        """
        return verify_receipt(self.token, trust.as_root_ca, trust.enclave_info, trust.policy, at=at)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.token + "\n", encoding="ascii")


def fetch_receipt_token(session: Caller, task_id: str) -> str:
    """The task's receipt (participants only, like GetTask); empty when it has none."""
    request = cpb.GetTaskReceiptRequest(task_id=task_id)
    response = session.frontend("GetTaskReceipt", request, service=CLOISTER_FRONTEND)
    return str(response.receipt)
