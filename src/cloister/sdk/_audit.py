"""``client.audit``: the audit log, a page at a time, for platform administrators.

Entries are numbered from 1, without gaps, in the order the platform stored them; a page holds
the matching entries numbered above a cursor and says where the next one starts, so following
the cursors reads every matching entry exactly once, however many are added meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.model.audit import AuditEntry, AuditPage, AuditRecord
from cloister.rpc.convert.audit import entry_from_proto, page_from_proto
from cloister.sdk._channel import CLOISTER_FRONTEND
from cloister.sdk._session import Caller

DEFAULT_PAGE_SIZE = 100
ITERATION_PAGE_SIZE = 1000


class AuditAPI:
    """``client.audit``: search the audit log (platform administrators only).

    Queries use tantivy's language, as Teaclave's QueryAuditLogs: ``message:register_function``,
    ``+user:alice -result:true``, ``date:[2026-01-01T00:00:00Z TO *]``, ``AND``/``OR``/``NOT``,
    parentheses; the empty query matches every entry.
    """

    def __init__(self, session: Caller) -> None:
        self._session = session

    def query(self, query: str = "", *, limit: int = DEFAULT_PAGE_SIZE, after: int = 0) -> AuditPage:
        """One page of the entries matching ``query`` numbered above ``after``, oldest first.

        Args:
            query: what to find; empty for every entry.
            limit: at most this many entries (at most 10000). A page also ends before it
                would pass 3 MiB, and after reading 20000 entries, so a page may hold fewer
                entries than asked for and still not be the last: look at ``caught_up``.
            after: the previous page's ``next_after``; 0 for the first page.

        Raises:
            AccessDeniedError: you are not a platform administrator.
            InvalidArgumentError: the query does not parse (the message says where), or
                ``limit`` is too large.
        """
        request = cpb.QueryAuditPageRequest(query=query, limit=limit, after=after)
        return page_from_proto(self._session.frontend("QueryAuditPage", request, service=CLOISTER_FRONTEND))

    def entries(self, query: str = "", *, after: int = 0) -> Iterator[AuditRecord]:
        """Every entry matching ``query`` numbered above ``after``, oldest first, page by page.

        Stops at the newest entry stored when its page is read. Entries that retention has
        already deleted from storage (up to a page's ``cut_through``) are not in any page: its
        export files hold them.
        """
        while True:
            page = self.query(query, limit=ITERATION_PAGE_SIZE, after=after)
            yield from page.records
            if page.caught_up or page.next_after <= after:
                return
            after = page.next_after

    def newest(self, query: str = "", *, limit: int = DEFAULT_PAGE_SIZE) -> list[AuditEntry]:
        """At most ``limit`` entries matching ``query``, newest first (Teaclave's QueryAuditLogs).

        Newer seconds first and, within one second, in the order stored. The answer also ends
        before it would pass 3 MiB; :meth:`entries` reaches every entry.
        """
        request = fe_pb.QueryAuditLogsRequest(query=query, limit=limit)
        return [entry_from_proto(e) for e in self._session.frontend("QueryAuditLogs", request).logs]
