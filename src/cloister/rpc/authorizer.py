"""Services ask the access control service before they act; they decide nothing themselves.

Management and authentication are where requests are enforced: they read the objects a
request touches, describe them by their attributes (:mod:`cloister.model.access`), and refuse
the request when the access control service's policy denies it. When that service cannot be
reached, the request fails: nothing is allowed by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister.errors import AccessDeniedError
from cloister.model.access import Query, Subject
from cloister.rpc.channel import Peer
from cloister.rpc.convert.access import MAX_QUERIES, authorize_request


class Authorizer(Protocol):
    async def decide(self, subject: Subject, queries: Sequence[Query]) -> list[bool]:
        """One answer per query, in order."""
        ...


class RemoteAuthorizer:
    """The access control service, over its attested channel."""

    def __init__(self, access_control: Peer) -> None:
        self._access_control = access_control

    async def decide(self, subject: Subject, queries: Sequence[Query]) -> list[bool]:
        decisions: list[bool] = []
        for start in range(0, len(queries), MAX_QUERIES):
            batch = queries[start : start + MAX_QUERIES]
            response = await self._access_control.call(
                cgrpc.AccessControlStub, "Authorize", authorize_request(subject, batch)
            )
            if len(response.allowed) != len(batch):
                raise denied()  # an answer that does not fit the question is no permission
            decisions.extend(response.allowed)
        return decisions


def denied() -> AccessDeniedError:
    return AccessDeniedError("permission denied")


async def require(authorizer: Authorizer, subject: Subject, query: Query) -> None:
    """Raise the reference's ``permission denied`` unless the policy allows ``query``."""
    (allowed,) = await authorizer.decide(subject, [query])
    if not allowed:
        raise denied()
