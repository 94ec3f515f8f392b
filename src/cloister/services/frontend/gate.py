"""The checks every frontend call passes: who is calling (authentication) and may they (access control).

Authentication verifies the token first and answers with the role stored for the user now;
the answer is remembered until authentication says the user changed (``tokens``), so a token
is verified once, not on every call. Access control is then asked whether that role may call
the API. Its answers depend only on (role, API) and its policy, which changes only when the
service restarts, so they are remembered for ``DECISION_TTL`` seconds. Access control is never
asked about a role the caller merely claims: its audit log would show decisions for callers
nobody authenticated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cloister._proto import teaclave_access_control_service_pb2 as apb
from cloister._proto import teaclave_access_control_service_pb2_grpc as agrpc
from cloister._proto import teaclave_authentication_service_pb2 as aupb
from cloister._proto import teaclave_authentication_service_pb2_grpc as augrpc
from cloister._proto import teaclave_common_pb2 as cpb
from cloister.errors import AccessDeniedError, AuthenticationError, CloisterError, StatusCode
from cloister.model.roles import Role
from cloister.rpc.channel import Peer
from cloister.rpc.metadata import Caller
from cloister.services.frontend.tokens import RememberedTokens

DECISION_TTL = 2.0
INCORRECT_CREDENTIAL = "incorrent credential"
"""Teaclave's frontend message for a token that does not verify, typo included (§2.3)."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: Role


class Gate:
    def __init__(self, authentication: Peer, access_control: Peer, tokens: RememberedTokens | None = None) -> None:
        self._authentication = authentication
        self._access_control = access_control
        self._tokens = tokens or RememberedTokens()
        self._decisions: dict[tuple[str, str], tuple[bool, float]] = {}

    async def admit(self, caller: Caller, api: str) -> Principal:
        """The verified caller, if they may call ``api``.

        Raises:
            AuthenticationError: credentials missing or wrong.
            AccessDeniedError: the caller's role may not call ``api``.
            UnavailableError: authentication or access control cannot answer now (naming which).
        """
        user_id, token = caller.require_credentials()
        role = self._tokens.role(user_id, token) or await self._authenticate(user_id, token)
        if not await self._authorize(role, api):
            raise AccessDeniedError("permission denied")
        return Principal(user_id, Role.parse(role))

    async def _authenticate(self, user_id: str, token: str) -> str:
        """The role authentication answers for a valid token (remembered for the next calls)."""
        epoch = self._tokens.epoch
        try:
            response = await self._authentication.call(
                augrpc.TeaclaveAuthenticationInternalStub,
                "UserAuthenticate",
                aupb.UserAuthenticateRequest(credential=cpb.UserCredential(id=user_id, token=token)),
            )
        except CloisterError as exc:
            if exc.status in (StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED):
                raise  # the authentication service is down, which is not the caller's fault
            raise AuthenticationError(INCORRECT_CREDENTIAL) from None
        if not response.HasField("claims") or response.claims.sub != user_id:
            raise AuthenticationError(INCORRECT_CREDENTIAL)
        self._tokens.remember(user_id, token, response.claims.role, response.claims.exp, since_epoch=epoch)
        return response.claims.role

    async def _authorize(self, role: str, api: str) -> bool:
        """Access control's decision for (role, api). When access control cannot answer, the call
        fails with its error (UNAVAILABLE naming the service), which is not remembered."""
        subject = Role.parse(role).policy_subject
        now = time.monotonic()
        remembered = self._decisions.get((subject, api))
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        response = await self._access_control.call(
            agrpc.TeaclaveAccessControlStub,
            "AuthorizeApi",
            apb.AuthorizeApiRequest(user_role=subject, api=api),
        )
        if len(self._decisions) > 10_000:
            self._decisions.clear()
        self._decisions[(subject, api)] = (response.accept, now + DECISION_TTL)
        return response.accept
