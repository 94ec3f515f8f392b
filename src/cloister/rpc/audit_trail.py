"""Audit entries for the calls a service answers (§13.1): spooled durably, then shipped to management.

:meth:`AuditTrail.record` returns once the entry is on the service's own disk (``audit_spool``),
so a call is answered only after its entry is safe; if the spool cannot be written, the call
fails instead. A supervised loop ships what the spool holds to management's ``SaveLogs``,
naming this source and the batch's first sequence number in metadata, so management can skip
a batch it already stored when a crash came between its commit and our deletion of the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path

from google.protobuf.message import DecodeError

from cloister._proto import teaclave_common_pb2 as cpb
from cloister._proto import teaclave_management_service_pb2 as mpb
from cloister._proto import teaclave_management_service_pb2_grpc as mgrpc
from cloister.errors import CloisterError, MalformedRequestError
from cloister.rpc.audit_spool import AuditSpool
from cloister.rpc.channel import Peer
from cloister.rpc.retry import Backoff, supervised

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("cloister.audit")

SOURCE_KEY = "cloister-audit-source"
"""SaveLogs metadata: which spool a batch comes from (the service process's name and the spool's random id)."""
FIRST_SEQ_KEY = "cloister-audit-seq"
"""SaveLogs metadata: the spool sequence number of the batch's first entry; the rest follow it one by one."""
MAX_BATCH = 1_000
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
_MAX_SEQ = 2**63 - 1
_SHIP_PAUSE = 0.5
"""After a batch, wait this long for the next: an entry after a quiet spell ships at once, and
under load each service makes two batches a second (each batch costs management a chain and
index commit however many entries it holds), while entries still arrive within a second."""
_STOP_TIMEOUT = 5.0


_PLAIN_ID = re.compile(r"[A-Za-z0-9_.@+=~/-]*")
"""User ids shown as they are; any other is shown as a JSON string, so that an id such as
``admin, role: PlatformAdmin`` cannot pass for another entry's user and role."""


def audit_user(user_id: str | None = None, role: str | None = None) -> str:
    """An entry's user field in Teaclave's form: ``{ user: alice, role: DataOwner("org1") }``."""
    shown = user_id if user_id is None or _PLAIN_ID.fullmatch(user_id) else json.dumps(user_id)
    parts = ([f"user: {shown}"] if shown is not None else []) + ([f"role: {role}"] if role is not None else [])
    return "{ " + ", ".join(parts) + " }"


def spool_position(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[str, int] | None:
    """The source and first sequence number a SaveLogs batch names, or None for a client that names none.

    Raises:
        MalformedRequestError: only one of the two is there, or either is not well formed.
    """
    values = {key: value for key, value in metadata or () if key in (SOURCE_KEY, FIRST_SEQ_KEY)}
    if not values:
        return None
    source, first = values.get(SOURCE_KEY), values.get(FIRST_SEQ_KEY)
    if not isinstance(source, str) or not isinstance(first, str) or not _SOURCE_NAME.fullmatch(source):
        raise MalformedRequestError("SaveLogs needs both audit source and sequence metadata, well formed")
    if not first.isdigit() or not 1 <= int(first) <= _MAX_SEQ:
        raise MalformedRequestError("SaveLogs audit sequence metadata must be a positive number")
    return source, int(first)


class AuditTrail:
    """Records entries durably in a spool under ``directory`` and ships them to management's SaveLogs."""

    def __init__(self, management: Peer, directory: Path, source: str) -> None:
        self._management = management
        self._source = source
        self._spool = AuditSpool(directory)
        self._spool_name = source
        self._shipped = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def record(self, ip: bytes, user: str, message: str, result: bool) -> None:
        """Return once the entry is durable; answer the call it records only then.

        Raises:
            ResourceExhaustedError: the spool's disk is full; the call must fail.
            InternalError: the spool could not be written otherwise; the call must fail.
        """
        entry = cpb.Entry(microsecond=time.time_ns() // 1000, ip=ip, user=user, message=message, result=result)
        await self._spool.append(entry.SerializeToString())
        audit_logger.info("%s %s %s", user or "-", message, "ok" if result else "failed")
        self._wakeup.set()

    def start(self) -> None:
        """Replay the spool (what a previous run left is shipped first) and start shipping."""
        waiting = self._spool.open()
        self._spool_name = f"{self._source}-{self._spool.spool_id}"
        if waiting:
            logger.info("audit spool holds %d entries from before; shipping them", waiting)
        self._wakeup.set()
        self._task = asyncio.create_task(supervised("audit shipping", self._ship), name="audit-shipping")

    async def stop(self) -> None:
        """Stop shipping after one last attempt; what is not shipped stays spooled for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(CloisterError, TimeoutError):
            await asyncio.wait_for(self._ship_all(), _STOP_TIMEOUT)
        self._spool.close()

    async def _ship(self) -> None:
        backoff = Backoff()
        self._wakeup.set()  # (re)started: look at the spool at once, not at the next entry
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                if await self._ship_batch():
                    self._wakeup.set()  # more is waiting already
            except CloisterError as exc:
                logger.warning("could not ship audit entries to management (%s); will retry", exc.message)
                self._wakeup.set()
                await backoff.sleep()
                continue
            backoff.reset()
            await asyncio.sleep(_SHIP_PAUSE)  # let entries gather into the next batch

    async def _ship_all(self) -> None:
        while await self._ship_batch():
            pass

    async def _ship_batch(self) -> bool:
        """Ship the oldest unshipped entries, up to :data:`MAX_BATCH`; whether more were left behind.

        One batch per pause, not a drain: under load a drain never ends, and management would get
        a batch for every few entries instead of one for all that gathered meanwhile.
        """
        batch = await asyncio.to_thread(self._spool.read, self._shipped, MAX_BATCH)
        run: list[bytes] = []
        if batch:
            first = batch[0][0]
            run = [payload for n, (seq, payload) in enumerate(batch) if seq == first + n]
            entries = []
            for payload in run:
                try:
                    entries.append(cpb.Entry.FromString(payload))
                except DecodeError:  # passed its checksum yet is not an entry: keep its place, say so
                    logger.error("audit spool of %s holds an unreadable entry; shipping a marker instead", self._source)
                    entries.append(cpb.Entry(ip=bytes(16), message="unreadable audit entry", result=False))
            metadata = ((SOURCE_KEY, self._spool_name), (FIRST_SEQ_KEY, str(first)))
            request = mpb.SaveLogsRequest(logs=entries)
            await self._management.call(mgrpc.TeaclaveManagementStub, "SaveLogs", request, metadata=metadata)
            self._shipped = first + len(run) - 1
            await asyncio.to_thread(self._spool.release, self._shipped)
        return len(batch) == MAX_BATCH or len(run) < len(batch)
