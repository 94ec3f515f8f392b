"""Authorization queries ↔ ``cloister.Authorize`` messages (:mod:`cloister.model.access`).

Attributes travel as one JSON object per query; sets become sorted lists on the way out and
every list becomes a set on the way in, so a rule compares sets whatever order was sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cloister._proto import cloister_pb2 as cpb
from cloister.errors import MalformedRequestError
from cloister.model.access import AttributeValue, Query, Subject
from cloister.model.roles import Role
from cloister.rpc.convert.limits import MAX_FILES, check_count, check_text

MAX_QUERIES = 2 * MAX_FILES + 16
"""AssignData asks once per file, and a task may have MAX_FILES inputs and as many outputs."""
MAX_ATTRIBUTES_JSON_BYTES = 4 * 1024 * 1024


def _encode_value(value: AttributeValue) -> Any:
    return sorted(value) if isinstance(value, frozenset) else value


def authorize_request(subject: Subject, queries: Sequence[Query]) -> cpb.AuthorizeRequest:
    return cpb.AuthorizeRequest(
        subject=cpb.AuthorizationSubject(user_id=subject.user_id, role=str(subject.role)),
        queries=[
            cpb.AuthorizationQuery(
                action=query.action,
                resource_id=query.resource_id,
                attributes_json=json.dumps({k: _encode_value(v) for k, v in query.attributes.items()}),
            )
            for query in queries
        ],
    )


def _decode_value(key: str, value: Any) -> AttributeValue:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise MalformedRequestError(f"attribute {key!r} must be a string, number, boolean, null or list of strings")


def subject_from_proto(subject: cpb.AuthorizationSubject) -> Subject:
    return Subject(check_text(subject.user_id, "user id"), Role.parse(check_text(subject.role, "role")))


def queries_from_proto(queries: Sequence[cpb.AuthorizationQuery]) -> list[Query]:
    """Validated queries; the action is kept as sent, and one the policy does not know is denied."""
    check_count(queries, "queries", MAX_QUERIES)
    decoded = []
    for query in queries:
        if len(query.attributes_json) > MAX_ATTRIBUTES_JSON_BYTES:
            raise MalformedRequestError(f"attributes are too long: at most {MAX_ATTRIBUTES_JSON_BYTES} bytes")
        try:
            raw = json.loads(query.attributes_json or "{}")
        except ValueError:
            raise MalformedRequestError("attributes are not JSON") from None
        if not isinstance(raw, dict) or not all(key.isidentifier() and key[0] != "_" for key in raw):
            raise MalformedRequestError("attributes must be a JSON object keyed by names not starting with _")
        attributes = {key: _decode_value(key, value) for key, value in raw.items()}
        decoded.append(
            Query(check_text(query.action, "action"), check_text(query.resource_id, "resource id"), attributes)
        )
    return decoded
