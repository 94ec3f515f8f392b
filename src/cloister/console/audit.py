"""The audit log for platform administrators: a query, a page at a time, and an export of every match."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterator

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cloister.console.kit import PageKit, whole_number
from cloister.console.link import Participant
from cloister.model.audit import AuditRecord
from cloister.sdk._audit import AuditAPI

PAGE_SIZE = 50


def row(record: AuditRecord) -> dict[str, object]:
    """An entry as the page and the export show it: its number, UTC time, address, caller, message, outcome."""
    entry = record.entry
    when = dt.datetime.fromtimestamp(entry.microsecond / 1_000_000, dt.UTC)
    return {
        "seq": record.seq,
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "ip": shown_ip(entry.ip),
        "user": entry.user,
        "message": entry.message,
        "result": entry.result,
    }


def shown_ip(packed: bytes) -> str:
    """An entry's 16-byte address as people write it: IPv4 in either form the services store it
    (``::a.b.c.d``, ``::ffff:a.b.c.d``) as ``a.b.c.d``; empty when it is not 16 bytes."""
    if len(packed) != 16:
        return ""
    address = ipaddress.IPv6Address(packed)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if packed[:12] == bytes(12) and packed[12:15] != bytes(3):  # not :: or ::1
        return str(ipaddress.IPv4Address(packed[12:]))
    return str(address)


class AuditPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit
        self.search = kit.as_user(self._search)
        self.export = kit.as_user(self._export)

    async def _search(self, request: Request, participant: Participant) -> Response:
        query = request.query_params.get("q", "")
        after = whole_number(request.query_params.get("after", "0"), 2**63 - 1)
        if after is None:
            return self._kit.error(request, 400, "The page cursor must be a whole number.", participant)
        page = await run_in_threadpool(AuditAPI(participant).query, query, limit=PAGE_SIZE, after=after)
        context = {"query": query, "page": page, "rows": [row(r) for r in page.records], "after": after}
        return self._kit.render(request, "audit.html", context, user=participant)

    async def _export(self, request: Request, participant: Participant) -> Response:
        query = request.query_params.get("q", "")
        api = AuditAPI(participant)
        await run_in_threadpool(api.query, query, limit=1)  # refused (not an admin, bad query) before streaming

        def lines() -> Iterator[str]:
            for record in api.entries(query):
                yield json.dumps(row(record), ensure_ascii=False) + "\n"

        headers = {"Content-Disposition": 'attachment; filename="cloister-audit.jsonl"'}
        return StreamingResponse(iterate_in_threadpool(lines()), media_type="application/x-ndjson", headers=headers)
