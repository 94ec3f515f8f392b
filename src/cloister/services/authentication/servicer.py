"""Authentication RPCs in the reference's check order (§4.4), every failure UNAUTHENTICATED (§2.2).

Decisions about who may manage whom come from ``permissions``; this module decodes requests,
checks credentials, hashes passwords off the event loop and encodes answers. Passwords are
never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from google.protobuf import empty_pb2

from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_authentication_service_pb2_grpc as agrpc
from cloister.config import AuthenticationSettings
from cloister.errors import AuthenticationError
from cloister.model.roles import Role
from cloister.rpc.metadata import Caller
from cloister.services.authentication import permissions
from cloister.services.authentication.passwords import (
    PasswordHash,
    hash_password,
    password_too_long,
    unguessable_hash,
    verify_password,
)
from cloister.services.authentication.tokens import JWTIssuer, TokenClaims
from cloister.services.authentication.users import UserRecord, UserStore, check_role, check_user_id

logger = logging.getLogger(__name__)

_EMPTY = empty_pb2.Empty()


class _Context(Protocol):
    def invocation_metadata(self) -> Any: ...


class _Credentials:
    """Checks ``id`` + token pairs; shared by the API's calls and the internal ``UserAuthenticate``."""

    def __init__(self, store: UserStore, issuer: JWTIssuer, clock: Callable[[], float]) -> None:
        self._store = store
        self._issuer = issuer
        self._clock = clock

    def check(self, user_id: str, token: str) -> TokenClaims:
        """The token's claims if ``user_id`` exists and ``token`` is valid for it now."""
        if not user_id or self._store.get(user_id) is None or not token:
            raise AuthenticationError()
        return self._issuer.verify_jwt(token, user_id, now=self._clock())


class ApiServicer(agrpc.TeaclaveAuthenticationApiServicer):
    """The client-facing endpoint (port 7776)."""

    def __init__(
        self,
        store: UserStore,
        issuer: JWTIssuer,
        settings: AuthenticationSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._issuer = issuer
        self._iterations = settings.pbkdf2_iterations
        self._credentials = _Credentials(store, issuer, clock)
        self._clock = clock
        self._decoy = unguessable_hash(settings.pbkdf2_iterations)

    async def UserRegister(self, request: apb.UserRegisterRequest, context: _Context) -> empty_pb2.Empty:
        requester_id, requester = self._authenticate(context)
        check_user_id(request.id)
        if self._store.exists(request.id):
            raise AuthenticationError("user id exist")
        role = Role.from_request(request.role, request.attribute)
        check_role(role)
        if not permissions.may_register(requester, role):
            raise AuthenticationError("permission denied")
        password = await self._hash(request.password)
        if not await self._store.create(UserRecord(request.id, role, password)):
            raise AuthenticationError("user id exist")
        logger.info("user %r registered by %r as %s", request.id, requester_id, role)
        return _EMPTY

    async def UserUpdate(self, request: apb.UserUpdateRequest, context: _Context) -> empty_pb2.Empty:
        requester_id, requester = self._authenticate(context)
        if not request.id or not self._store.exists(request.id):
            raise AuthenticationError("invalid user id")
        role = Role.from_request(request.role, request.attribute)
        check_role(role)
        if not permissions.may_update(requester, role):
            raise AuthenticationError("permission denied")
        password = await self._hash(request.password)
        if not await self._store.replace(UserRecord(request.id, role, password)):
            raise AuthenticationError("invalid user id")
        logger.info("user %r updated by %r to %s", request.id, requester_id, role)
        return _EMPTY

    async def UserLogin(self, request: apb.UserLoginRequest, context: _Context) -> apb.UserLoginResponse:
        if not request.id or not request.password:
            raise AuthenticationError()
        record = self._store.get(request.id)
        # Unknown users cost a full hash too, so the answer time does not reveal which ids exist.
        stored = record.password if record is not None else self._decoy
        await asyncio.to_thread(verify_password, request.password, stored)
        if record is None:  # pragma: no cover - the decoy matches no password
            raise AuthenticationError()
        return apb.UserLoginResponse(token=self._issuer.issue(record.id, record.role, self._clock()))

    async def UserChangePassword(self, request: apb.UserChangePasswordRequest, context: _Context) -> empty_pb2.Empty:
        requester_id, requester = self._authenticate(context)
        if not request.password:
            raise AuthenticationError()
        password = await self._hash(request.password)
        # The reference stores the role from the token, not the record's current one.
        if not await self._store.replace(UserRecord(requester_id, requester, password)):
            raise AuthenticationError()
        return _EMPTY

    async def ResetUserPassword(
        self, request: apb.ResetUserPasswordRequest, context: _Context
    ) -> apb.ResetUserPasswordResponse:
        requester_id, requester = self._authenticate(context)
        if not request.id:
            raise AuthenticationError("invalid user id")
        target = self._store.get(request.id)
        if target is None or not permissions.may_reset(requester, target.role):
            raise AuthenticationError("permission denied")
        new_password = uuid.uuid4().hex
        password = await self._hash(new_password)
        if not await self._store.replace(UserRecord(target.id, target.role, password)):
            raise AuthenticationError("permission denied")
        logger.info("password of user %r reset by %r", target.id, requester_id)
        return apb.ResetUserPasswordResponse(password=new_password)

    async def DeleteUser(self, request: apb.DeleteUserRequest, context: _Context) -> empty_pb2.Empty:
        requester_id, requester = self._authenticate(context)
        if not request.id:
            raise AuthenticationError("invalid user id")
        target = self._store.get(request.id)
        if target is None or not permissions.may_delete(requester, target.role):
            raise AuthenticationError("permission denied")
        if not await self._store.delete(target.id):
            raise AuthenticationError("permission denied")
        logger.info("user %r deleted by %r", target.id, requester_id)
        return _EMPTY

    async def ListUsers(self, request: apb.ListUsersRequest, context: _Context) -> apb.ListUsersResponse:
        _, requester = self._authenticate(context)
        if not request.id:
            raise AuthenticationError("invalid user id")
        if not permissions.may_list(requester, request.id):
            raise AuthenticationError("permission denied")
        if requester.is_admin:
            return apb.ListUsersResponse(ids=self._store.list_ids())
        records = self._store.list_records()
        return apb.ListUsersResponse(ids=[r.id for r in records if permissions.listed(requester, r.role)])

    def _authenticate(self, context: _Context) -> tuple[str, Role]:
        """The requester's id and the role in its token (not the one stored now, as in the reference)."""
        user_id, token = Caller.from_metadata(context.invocation_metadata()).require_credentials()
        claims = self._credentials.check(user_id, token)
        return user_id, Role.parse(claims.role)

    async def _hash(self, password: str) -> PasswordHash:
        if password_too_long(password):
            raise AuthenticationError("invalid password")
        return await asyncio.to_thread(hash_password, password, self._iterations)


class InternalServicer(agrpc.TeaclaveAuthenticationInternalServicer):
    """The frontend's endpoint (port 17776): one token check per frontend call, no password hashing."""

    def __init__(self, store: UserStore, issuer: JWTIssuer, clock: Callable[[], float] = time.time) -> None:
        self._credentials = _Credentials(store, issuer, clock)

    async def UserAuthenticate(
        self, request: apb.UserAuthenticateRequest, context: _Context
    ) -> apb.UserAuthenticateResponse:
        if not request.HasField("credential"):
            raise AuthenticationError()
        claims = self._credentials.check(request.credential.id, request.credential.token)
        return apb.UserAuthenticateResponse(
            claims=apb.UserAuthClaims(sub=claims.sub, role=claims.role, iss=claims.iss, exp=claims.exp)
        )
