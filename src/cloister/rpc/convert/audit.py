"""Audit entries ↔ ``teaclave_common_proto.Entry`` (reference §13.1)."""

from __future__ import annotations

from cloister._proto import teaclave_common_pb2 as common_pb
from cloister.model.audit import AuditEntry


def entry_from_proto(entry: common_pb.Entry) -> AuditEntry:
    return AuditEntry(entry.microsecond, bytes(entry.ip), entry.user, entry.message, entry.result)


def entry_to_proto(entry: AuditEntry) -> common_pb.Entry:
    return common_pb.Entry(
        microsecond=entry.microsecond, ip=entry.ip, user=entry.user, message=entry.message, result=entry.result
    )
