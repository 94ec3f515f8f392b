"""Audit entries ↔ ``teaclave_common_proto.Entry`` (reference §13.1), and pages of them (Cloister's cursor)."""

from __future__ import annotations

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_common_pb2 as common_pb
from cloister.model.audit import AuditEntry, AuditPage, AuditRecord


def entry_from_proto(entry: common_pb.Entry) -> AuditEntry:
    return AuditEntry(entry.microsecond, bytes(entry.ip), entry.user, entry.message, entry.result)


def entry_to_proto(entry: AuditEntry) -> common_pb.Entry:
    return common_pb.Entry(
        microsecond=entry.microsecond, ip=entry.ip, user=entry.user, message=entry.message, result=entry.result
    )


def page_to_proto(page: AuditPage) -> cpb.QueryAuditPageResponse:
    return cpb.QueryAuditPageResponse(
        records=[cpb.AuditRecord(seq=r.seq, entry=entry_to_proto(r.entry)) for r in page.records],
        next_after=page.next_after,
        head=page.head,
        cut_through=page.cut_through,
    )


def page_from_proto(message: cpb.QueryAuditPageResponse) -> AuditPage:
    return AuditPage(
        tuple(AuditRecord(r.seq, entry_from_proto(r.entry)) for r in message.records),
        message.next_after,
        message.head,
        message.cut_through,
    )
