"""Authentication RPCs in the reference's check order (§4.4), every failure UNAUTHENTICATED (§2.2).

Who may manage whom is decided by the access control service, from the caller's and the
target's roles as stored now; this module decodes requests, checks credentials, hashes
passwords off the event loop and encodes answers. A token counts only while its user's token
generation is the stored one, so any change to a user ends the user's older tokens. Passwords
are never logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from google.protobuf import empty_pb2

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_authentication_service_pb2_grpc as agrpc
from cloister.config import AuthenticationSettings
from cloister.errors import AuthenticationError, UserExistsError
from cloister.model.access import Action, Query, Subject, account_query, listed_role_query, user_list_query
from cloister.model.roles import Role, RoleKind
from cloister.rpc.authorizer import Authorizer
from cloister.rpc.forwarding import caller_ip
from cloister.rpc.metadata import Caller
from cloister.services.authentication.feed import CredentialFeed
from cloister.services.authentication.passwords import PasswordHash, PasswordHasher, password_too_long
from cloister.services.authentication.throttle import LoginThrottle, address_key
from cloister.services.authentication.tokens import JWTIssuer, TokenClaims
from cloister.services.authentication.users import UserRecord, UserStore, check_role, check_user_id, new_generation

logger = logging.getLogger(__name__)

_EMPTY = empty_pb2.Empty()

verified_caller: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("verified_caller", default=None)
"""Where a call's audit entry learns whose token was verified (a list the entry's recorder owns)."""
_NO_USER = Role(RoleKind.INVALID)
"""The role a target that does not exist is described with: only rules that allow any role allow it."""


class _Context(Protocol):
    def invocation_metadata(self) -> Any: ...

    def peer(self) -> str: ...


class _Credentials:
    """Checks ``id`` + token pairs; shared by the API's calls and the internal ``UserAuthenticate``."""

    def __init__(self, store: UserStore, issuer: JWTIssuer, clock: Callable[[], float]) -> None:
        self._store = store
        self._issuer = issuer
        self._clock = clock

    def check(self, user_id: str, token: str) -> tuple[UserRecord, TokenClaims]:
        """The user as stored now and the token's claims, if ``token`` is valid for ``user_id`` now."""
        record = self._store.get(user_id) if user_id else None
        if record is None or not token:
            raise AuthenticationError()
        claims = self._issuer.verify_jwt(token, user_id, now=self._clock())
        if not record.generation or claims.gen != record.generation:
            raise AuthenticationError()
        return record, claims


class ApiServicer(agrpc.TeaclaveAuthenticationApiServicer):
    """The client-facing endpoint (port 7776)."""

    def __init__(
        self,
        store: UserStore,
        issuer: JWTIssuer,
        authorizer: Authorizer,
        settings: AuthenticationSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._issuer = issuer
        self._authorizer = authorizer
        self._hasher = PasswordHasher(settings)
        self._credentials = _Credentials(store, issuer, clock)
        self._clock = clock
        self._decoy = self._hasher.decoy()
        self._throttle = LoginThrottle(
            settings.login_failures_per_user,
            settings.login_failures_per_address,
            settings.login_failure_window_seconds,
            clock,
        )

    async def UserRegister(self, request: apb.UserRegisterRequest, context: _Context) -> empty_pb2.Empty:
        requester = self._authenticate(context)
        check_user_id(request.id)
        role = Role.from_request(request.role, request.attribute)
        check_role(role)
        existing = self._store.get(request.id)
        former = self._store.former_role(request.id) if existing is None else None
        # The id's present or former holder must be within the caller's reach too: telling
        # that an id is taken, or inheriting what a deleted user owned, is acting on that user.
        holder = existing.role if existing is not None else former
        roles = [role] if holder is None else [role, holder]
        subject = _subject(requester)
        await self._authorize(requester, *(account_query(Action.USER_REGISTER, subject, request.id, r) for r in roles))
        if existing is not None:
            raise UserExistsError()
        password = await self._hash(request.password)
        record = UserRecord(request.id, role, password, new_generation())
        if not await self._store.create(record, former=former, by=requester):
            raise UserExistsError()
        logger.info("user %r registered by %r as %s", request.id, requester.id, role)
        return _EMPTY

    async def UserUpdate(self, request: apb.UserUpdateRequest, context: _Context) -> empty_pb2.Empty:
        requester = self._authenticate(context)
        if not request.id:
            raise AuthenticationError("invalid user id")
        role = Role.from_request(request.role, request.attribute)
        check_role(role)
        target = self._store.get(request.id)
        current = target.role if target is not None else _NO_USER
        await self._authorize(
            requester, account_query(Action.USER_UPDATE, _subject(requester), request.id, current, role)
        )
        if target is None:
            raise AuthenticationError("invalid user id")
        password = await self._hash(request.password)
        updated = UserRecord(target.id, role, password, new_generation())
        if not await self._store.replace(target, updated, by=requester):
            raise AuthenticationError("invalid user id")
        logger.info("user %r updated by %r to %s", target.id, requester.id, role)
        return _EMPTY

    async def UserLogin(self, request: apb.UserLoginRequest, context: _Context) -> apb.UserLoginResponse:
        if not request.id or not request.password:
            raise AuthenticationError()
        attempt = self._throttle.begin(request.id, address_key(caller_ip(context)))
        record = self._store.get(request.id)
        # Unknown users cost a full hash too, so the answer time does not reveal which ids exist.
        stored = record.password if record is not None else self._decoy
        outdated = await asyncio.to_thread(self._hasher.verify, request.password, stored)
        if record is None:  # pragma: no cover - the decoy matches no password
            raise AuthenticationError()
        attempt.succeeded()
        if outdated or not record.generation:
            record = await self._upgrade(record, request.password)
        return apb.UserLoginResponse(token=self._issuer.issue(record.id, record.role, record.generation, self._clock()))

    async def UserChangePassword(self, request: apb.UserChangePasswordRequest, context: _Context) -> empty_pb2.Empty:
        requester = self._authenticate(context)
        await self._authorize(
            requester, account_query(Action.USER_CHANGE_PASSWORD, _subject(requester), requester.id, requester.role)
        )
        if not request.password:
            raise AuthenticationError()
        password = await self._hash(request.password)
        # The stored role, never the token's: changing a password never changes a role.
        changed = UserRecord(requester.id, requester.role, password, new_generation())
        if not await self._store.replace(requester, changed):
            raise AuthenticationError()
        return _EMPTY

    async def ResetUserPassword(
        self, request: apb.ResetUserPasswordRequest, context: _Context
    ) -> apb.ResetUserPasswordResponse:
        requester = self._authenticate(context)
        if not request.id:
            raise AuthenticationError("invalid user id")
        target = await self._authorized_target(requester, Action.USER_RESET_PASSWORD, request.id)
        new_password = uuid.uuid4().hex
        password = await self._hash(new_password)
        reset = UserRecord(target.id, target.role, password, new_generation())
        if not await self._store.replace(target, reset, by=requester):
            raise AuthenticationError("permission denied")
        logger.info("password of user %r reset by %r", target.id, requester.id)
        return apb.ResetUserPasswordResponse(password=new_password)

    async def DeleteUser(self, request: apb.DeleteUserRequest, context: _Context) -> empty_pb2.Empty:
        requester = self._authenticate(context)
        if not request.id:
            raise AuthenticationError("invalid user id")
        target = await self._authorized_target(requester, Action.USER_DELETE, request.id)
        if not await self._store.delete(target, by=requester):
            raise AuthenticationError("permission denied")
        logger.info("user %r deleted by %r", target.id, requester.id)
        return _EMPTY

    async def ListUsers(self, request: apb.ListUsersRequest, context: _Context) -> apb.ListUsersResponse:
        requester = self._authenticate(context)
        if not request.id:
            raise AuthenticationError("invalid user id")
        subject = _subject(requester)
        await self._authorize(requester, user_list_query(request.id))
        records = self._store.list_records()
        roles = sorted({record.role for record in records}, key=str)
        decisions = await self._authorizer.decide(subject, [listed_role_query(role) for role in roles])
        shown = {role for role, allowed in zip(roles, decisions, strict=True) if allowed}
        return apb.ListUsersResponse(ids=[record.id for record in records if record.role in shown])

    def _authenticate(self, context: _Context) -> UserRecord:
        """The requester as stored now: its role is the one decisions are made on, not the token's."""
        user_id, token = Caller.from_metadata(context.invocation_metadata()).require_credentials()
        record, _ = self._credentials.check(user_id, token)
        verified = verified_caller.get()
        if verified is not None:
            verified.append(record.id)
        return record

    async def _authorize(self, requester: UserRecord, *queries: Query) -> None:
        """Raise "permission denied" unless the policy allows ``requester`` every one of ``queries``."""
        decisions = await self._authorizer.decide(_subject(requester), queries)
        if len(decisions) != len(queries) or not all(decisions):  # an answer that does not fit denies
            raise AuthenticationError("permission denied")

    async def _authorized_target(self, requester: UserRecord, action: Action, target_id: str) -> UserRecord:
        """The user ``target_id`` if the policy lets ``requester`` take ``action`` on it.

        A missing user is asked about as one with no role, so only a caller allowed to act on
        any user learns that it does not exist; everyone else is told "permission denied".
        """
        target = self._store.get(target_id)
        role = target.role if target is not None else _NO_USER
        await self._authorize(requester, account_query(action, _subject(requester), target_id, role))
        if target is None:
            raise AuthenticationError("permission denied")
        return target

    async def _upgrade(self, record: UserRecord, password: str) -> UserRecord:
        """Re-hash an old-style hash (or give a generation to a record from before they existed).

        The generation is kept when the record has one, so the user's other tokens stay valid.
        If the user changed meanwhile (a reset, a deletion), the password just checked may no
        longer be theirs: the login fails rather than hand out a token for the changed user.
        """
        upgraded = UserRecord(record.id, record.role, await self._hash(password), record.generation or new_generation())
        if not await self._store.replace(record, upgraded):
            raise AuthenticationError()
        logger.info("password hash of user %r upgraded", record.id)
        return upgraded

    async def _hash(self, password: str) -> PasswordHash:
        if password_too_long(password):
            raise AuthenticationError("invalid password")
        return await asyncio.to_thread(self._hasher.hash, password)


def _subject(record: UserRecord) -> Subject:
    return Subject(record.id, record.role)


class InternalServicer(agrpc.TeaclaveAuthenticationInternalServicer):
    """The frontend's endpoint (port 17776): one token check per frontend call, no password hashing.

    The claims it answers carry the role stored now, not the one in the token, so a role
    change takes effect on the user's next call (and ends their tokens anyway).
    """

    def __init__(self, store: UserStore, issuer: JWTIssuer, clock: Callable[[], float] = time.time) -> None:
        self._credentials = _Credentials(store, issuer, clock)

    async def UserAuthenticate(
        self, request: apb.UserAuthenticateRequest, context: _Context
    ) -> apb.UserAuthenticateResponse:
        if not request.HasField("credential"):
            raise AuthenticationError()
        record, claims = self._credentials.check(request.credential.id, request.credential.token)
        return apb.UserAuthenticateResponse(
            claims=apb.UserAuthClaims(sub=claims.sub, role=str(record.role), iss=claims.iss, exp=claims.exp)
        )


class CredentialFeedServicer(cgrpc.CredentialFeedServicer):
    def __init__(self, feed: CredentialFeed) -> None:
        self._feed = feed

    async def Watch(  # type: ignore[override]
        self, request_iterator: AsyncIterator[cpb.CredentialAck], context: object
    ) -> AsyncIterator[cpb.CredentialChanges]:
        async for message in self._feed.watch(request_iterator):
            yield message
