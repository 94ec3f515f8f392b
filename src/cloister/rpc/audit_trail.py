"""Audit entries for frontend calls (§13.1), buffered and shipped to management in batches."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import time
from urllib.parse import unquote

from cloister._proto import teaclave_common_pb2 as cpb
from cloister._proto import teaclave_management_service_pb2 as mpb
from cloister._proto import teaclave_management_service_pb2_grpc as mgrpc
from cloister.errors import CloisterError
from cloister.rpc.channel import Peer
from cloister.rpc.retry import supervised

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("cloister.audit")

_MAX_BUFFERED = 10_000
_MAX_BATCH = 1_000
_FLUSH_INTERVAL = 0.5


_PLAIN_ID = re.compile(r"[A-Za-z0-9_.@+=~/-]*")
"""User ids shown as they are; any other is shown as a JSON string, so that an id such as
``admin, role: PlatformAdmin`` cannot pass for another entry's user and role."""


def audit_user(user_id: str | None = None, role: str | None = None) -> str:
    """An entry's user field in Teaclave's form: ``{ user: alice, role: DataOwner("org1") }``."""
    shown = user_id if user_id is None or _PLAIN_ID.fullmatch(user_id) else json.dumps(user_id)
    parts = ([f"user: {shown}"] if shown is not None else []) + ([f"role: {role}"] if role is not None else [])
    return "{ " + ", ".join(parts) + " }"


def client_ip(peer: str) -> bytes:
    """16-byte IPv6 form of a gRPC peer string; IPv4 becomes IPv4-compatible ``::a.b.c.d``.

    gRPC writes IPv6 peers percent-encoded (``ipv6:%5B::1%5D:5000``) and may add a ``%zone``.
    """
    try:
        kind, _, rest = unquote(peer).partition(":")
        if kind == "ipv4":
            v4 = ipaddress.IPv4Address(rest.rsplit(":", 1)[0])
            return bytes(12) + v4.packed
        if kind == "ipv6":
            return ipaddress.IPv6Address(rest.rsplit(":", 1)[0].strip("[]").split("%", 1)[0]).packed
    except ValueError:
        pass
    return bytes(16)


class AuditTrail:
    """Collects entries and sends them to management's SaveLogs, retrying on failure."""

    def __init__(self, management: Peer) -> None:
        self._management = management
        self._entries: list[cpb.Entry] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(self, ip: bytes, user: str, message: str, result: bool) -> None:
        entry = cpb.Entry(microsecond=time.time_ns() // 1000, ip=ip, user=user, message=message, result=result)
        audit_logger.info("%s %s %s", user or "-", message, "ok" if result else "failed")
        if len(self._entries) >= _MAX_BUFFERED:
            logger.error("audit buffer full; dropping the oldest entry")
            self._entries.pop(0)
        self._entries.append(entry)
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(supervised("audit shipping", self._ship), name="audit-shipping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(CloisterError):
            await self._flush()

    async def _ship(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._flush()
            except CloisterError as exc:
                logger.warning("could not ship audit entries to management (%s); will retry", exc.message)
                self._wakeup.set()
            await asyncio.sleep(_FLUSH_INTERVAL)

    async def _flush(self) -> None:
        while self._entries:
            batch = self._entries[:_MAX_BATCH]
            await self._management.call(mgrpc.TeaclaveManagementStub, "SaveLogs", mpb.SaveLogsRequest(logs=batch))
            del self._entries[: len(batch)]
