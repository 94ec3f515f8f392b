"""The packaged access policy evaluated in the test's own process, behind management's Authorizer.

Queries still go through the wire conversion, so management's unit tests run the real rules
over exactly what the access control service would receive, without its gRPC hop.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloister.model.access import Query, Subject
from cloister.model.roles import Role
from cloister.rpc.convert.access import authorize_request, queries_from_proto, subject_from_proto
from cloister.services.access_control.policy import AccessPolicy


class PolicyAuthorizer:
    def __init__(self, policy: AccessPolicy | None = None) -> None:
        self.policy = policy or AccessPolicy()
        self.asked: list[tuple[str, str]] = []
        """(user id, action) of every query, in order."""

    async def decide(self, subject: Subject, queries: Sequence[Query]) -> list[bool]:
        request = authorize_request(subject, queries)
        received = subject_from_proto(request.subject)
        decisions = []
        for query in queries_from_proto(request.queries):
            self.asked.append((received.user_id, query.action))
            decisions.append(self.policy.allows(received, query))
        return decisions


def caller(user_id: str, role: Role | str | None = None) -> Subject:
    """A caller with ``role`` (a Role or its string); without one, the ``Invalid`` role a request
    carries where the reference does not forward roles."""
    if not isinstance(role, Role):
        role = Role.parse(role or "")
    return Subject(user_id, role)
