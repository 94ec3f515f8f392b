"""Access control RPCs: decode, ask the policy, record the decision, encode."""

from __future__ import annotations

import asyncio

import grpc

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_access_control_service_pb2 as apb
from cloister._proto import teaclave_access_control_service_pb2_grpc as agrpc
from cloister.rpc.audit_trail import AuditTrail, audit_user
from cloister.rpc.convert.access import queries_from_proto, subject_from_proto
from cloister.rpc.forwarding import client_ip
from cloister.services.access_control.policy import AccessPolicy

_MAX_FIELD = 256


class AccessControlServicer(agrpc.TeaclaveAccessControlServicer, cgrpc.AccessControlServicer):
    """Teaclave's role → API question, asked by the frontend for each call it does not remember,
    and Cloister's object-level questions, asked by management before it acts."""

    def __init__(self, policy: AccessPolicy, trail: AuditTrail) -> None:
        self._policy = policy
        self._trail = trail

    async def AuthorizeApi(
        self, request: apb.AuthorizeApiRequest, context: grpc.aio.ServicerContext
    ) -> apb.AuthorizeApiResponse:
        if len(request.user_role) > _MAX_FIELD or len(request.api) > _MAX_FIELD:
            return apb.AuthorizeApiResponse(accept=False)
        accept = self._policy.allows_api(request.user_role, request.api)
        user = audit_user(role=request.user_role)
        await self._trail.record(client_ip(context.peer() or ""), user, f"authorize api {request.api}", accept)
        return apb.AuthorizeApiResponse(accept=accept)

    async def Authorize(
        self, request: cpb.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> cpb.AuthorizeResponse:
        subject = subject_from_proto(request.subject)
        queries = queries_from_proto(request.queries)
        ip = client_ip(context.peer() or "")
        user = audit_user(subject.user_id, subject.role.debug_form())
        allowed = [self._policy.allows(subject, query) for query in queries]
        # Recorded together, in order: the entries share one write to the spool.
        await asyncio.gather(
            *(
                self._trail.record(ip, user, f"authorize {query.action} {query.resource_id}", decision)
                for query, decision in zip(queries, allowed, strict=True)
            )
        )
        return cpb.AuthorizeResponse(allowed=allowed)
