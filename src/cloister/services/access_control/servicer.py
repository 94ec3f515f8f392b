"""Access control RPCs: decode, ask the policy, encode."""

from __future__ import annotations

from cloister._proto import teaclave_access_control_service_pb2 as apb
from cloister._proto import teaclave_access_control_service_pb2_grpc as agrpc
from cloister.services.access_control.policy import ApiPolicy

_MAX_FIELD = 256


class AccessControlServicer(agrpc.TeaclaveAccessControlServicer):
    def __init__(self, policy: ApiPolicy) -> None:
        self._policy = policy

    async def AuthorizeApi(self, request: apb.AuthorizeApiRequest, context: object) -> apb.AuthorizeApiResponse:
        if len(request.user_role) > _MAX_FIELD or len(request.api) > _MAX_FIELD:
            return apb.AuthorizeApiResponse(accept=False)
        return apb.AuthorizeApiResponse(accept=self._policy.allows(request.user_role, request.api))
