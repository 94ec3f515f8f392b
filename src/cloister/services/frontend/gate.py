"""The checks every frontend call passes: who is calling (authentication) and may they (access control).

The two remote checks run concurrently: access control is asked about the role the token
claims while authentication verifies the token, and the answer counts only when the verified
role is the one that was asked about.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass

from cloister._proto import teaclave_access_control_service_pb2 as apb
from cloister._proto import teaclave_access_control_service_pb2_grpc as agrpc
from cloister._proto import teaclave_authentication_service_pb2 as aupb
from cloister._proto import teaclave_authentication_service_pb2_grpc as augrpc
from cloister._proto import teaclave_common_pb2 as cpb
from cloister.errors import AccessDeniedError, AuthenticationError, CloisterError
from cloister.model.roles import Role
from cloister.rpc.channel import Peer
from cloister.rpc.metadata import Caller

INCORRECT_CREDENTIAL = "incorrent credential"
"""Teaclave's frontend message for a token that does not verify, typo included (§2.3)."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: Role


class Gate:
    def __init__(self, authentication: Peer, access_control: Peer) -> None:
        self._authentication = authentication
        self._access_control = access_control

    async def admit(self, caller: Caller, api: str) -> Principal:
        """The verified caller, if they may call ``api``.

        Raises:
            AuthenticationError: credentials missing or wrong.
            AccessDeniedError: the caller's role may not call ``api``.
        """
        user_id, token = caller.require_credentials()
        claimed = _unverified_role(token)
        authorization = asyncio.ensure_future(self._authorize(claimed, api)) if claimed is not None else None
        try:
            response = await self._authentication.call(
                augrpc.TeaclaveAuthenticationInternalStub,
                "UserAuthenticate",
                aupb.UserAuthenticateRequest(credential=cpb.UserCredential(id=user_id, token=token)),
            )
        except CloisterError:
            if authorization is not None:
                authorization.cancel()
            raise AuthenticationError(INCORRECT_CREDENTIAL) from None
        if not response.HasField("claims") or response.claims.sub != user_id:
            raise AuthenticationError(INCORRECT_CREDENTIAL)
        role = Role.parse(response.claims.role)
        if authorization is None or claimed != response.claims.role:
            if authorization is not None:
                authorization.cancel()
            allowed = await self._authorize(response.claims.role, api)
        else:
            allowed = await authorization
        if not allowed:
            raise AccessDeniedError("permission denied")
        return Principal(user_id, role)

    async def _authorize(self, role: str, api: str) -> bool:
        try:
            response = await self._access_control.call(
                agrpc.TeaclaveAccessControlStub,
                "AuthorizeApi",
                apb.AuthorizeApiRequest(user_role=Role.parse(role).policy_subject, api=api),
            )
        except CloisterError:
            return False
        return response.accept


def _unverified_role(token: str) -> str | None:
    """The role a JWT claims, read without verifying it (only to start work early)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        role = claims.get("role")
        return role if isinstance(role, str) else None
    except (IndexError, ValueError, AttributeError):
        return None
