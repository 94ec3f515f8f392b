"""Authentication RPCs called directly, with a fake context carrying the request metadata."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_common_pb2 as cpb
from cloister.config import AuthenticationSettings
from cloister.errors import AuthenticationError, StatusCode
from cloister.model.roles import Role, RoleKind
from cloister.services.authentication.passwords import hash_password
from cloister.services.authentication.servicer import ApiServicer, InternalServicer
from cloister.services.authentication.tokens import JWTIssuer
from cloister.services.authentication.users import UserRecord, UserStore

FAST = AuthenticationSettings(pbkdf2_iterations=1000)
NOW = 1_700_000_000.0


class FakeContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Platform:
    """One store, one issuer, both servicers, and helpers to act as a logged-in user."""

    def __init__(self, directory: Path) -> None:
        self.store = UserStore(directory)
        self.clock = Clock()
        self.issuer = JWTIssuer.load_or_create(directory, FAST.token_lifetime_seconds)
        self.api = ApiServicer(self.store, self.issuer, FAST, clock=self.clock)
        self.internal = InternalServicer(self.store, self.issuer, clock=self.clock)

    async def add(self, user_id: str, role: Role, password: str = "pw") -> None:
        assert await self.store.create(UserRecord(user_id, role, hash_password(password, 1000)))

    async def login(self, user_id: str, password: str = "pw") -> FakeContext:
        response = await self.api.UserLogin(apb.UserLoginRequest(id=user_id, password=password), FakeContext())
        return FakeContext((("id", user_id), ("token", response.token)))

    async def authenticate(self, user_id: str, token: str) -> apb.UserAuthClaims:
        request = apb.UserAuthenticateRequest(credential=cpb.UserCredential(id=user_id, token=token))
        return (await self.internal.UserAuthenticate(request, FakeContext())).claims


ADMIN = Role(RoleKind.PLATFORM_ADMIN)
FO = Role(RoleKind.FUNCTION_OWNER)
DOM_A = Role(RoleKind.DATA_OWNER_MANAGER, "a")
DO_A = Role(RoleKind.DATA_OWNER, "a")
DO_B = Role(RoleKind.DATA_OWNER, "b")


def run(tmp_path: Path, scenario: Callable[[Platform], Awaitable[None]]) -> None:
    async def main() -> None:
        platform = Platform(tmp_path)
        try:
            await platform.add("admin", ADMIN)
            await scenario(platform)
        finally:
            platform.store.close()

    asyncio.run(main())


async def fails(message: str, call: Awaitable[object]) -> None:
    with pytest.raises(AuthenticationError) as info:
        await call
    assert info.value.message == message
    assert info.value.status is StatusCode.UNAUTHENTICATED


def register(
    user_id: str, role: str = "DataOwner", attribute: str = "", password: str = "pw"
) -> apb.UserRegisterRequest:
    return apb.UserRegisterRequest(id=user_id, password=password, role=role, attribute=attribute)


def test_register_then_login_then_authenticate(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        admin = await p.login("admin")
        await p.api.UserRegister(register("alice", "DataOwner", "org1", "s3cret"), admin)
        alice = await p.login("alice", "s3cret")
        claims = await p.authenticate("alice", dict(alice.invocation_metadata())["token"])
        assert (claims.sub, claims.role, claims.iss, claims.exp) == (
            "alice",
            "DataOwner-org1",
            "Teaclave",
            NOW + 86_400,
        )
        await fails("user id exist", p.api.UserRegister(register("alice"), admin))

    run(tmp_path, scenario)


def test_register_check_order_and_messages(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        admin = await p.login("admin")
        await fails("invalid user id", p.api.UserRegister(register(""), admin))
        await fails("invalid user id", p.api.UserRegister(register("bad\nid"), admin))
        await fails("user id exist", p.api.UserRegister(register("admin", role="Nonsense"), admin))
        await fails("invalid role", p.api.UserRegister(register("bob", role="Nonsense"), admin))
        await fails("invalid password", p.api.UserRegister(register("bob", password="x" * 5000), admin))
        await p.add("fo", FO)
        fo = await p.login("fo")
        await fails("permission denied", p.api.UserRegister(register("bob", "DataOwner", "a"), fo))
        await p.api.UserRegister(register("dom", "DataOwnerManager", "anything"), fo)  # the quirk
        await p.api.UserRegister(register("empty", "DataOwner", "a", password=""), admin)  # accepted, as in Teaclave
        await fails(
            "authentication failed", p.api.UserLogin(apb.UserLoginRequest(id="empty", password=""), FakeContext())
        )

    run(tmp_path, scenario)


def test_missing_metadata(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        token = dict((await p.login("admin")).invocation_metadata())["token"]
        await fails("missing user id", p.api.UserRegister(register("x"), FakeContext()))
        await fails("missing user id", p.api.ListUsers(apb.ListUsersRequest(id="x"), FakeContext((("token", token),))))
        await fails("missing token", p.api.ListUsers(apb.ListUsersRequest(id="x"), FakeContext((("id", "admin"),))))
        for ctx in (
            FakeContext((("id", "admin"), ("token", ""))),
            FakeContext((("id", "admin"), ("token", "InvalidToken"))),
            FakeContext((("id", "nobody"), ("token", token))),
        ):
            await fails("authentication failed", p.api.ListUsers(apb.ListUsersRequest(id="x"), ctx))

    run(tmp_path, scenario)


def test_login_failures_are_all_alike(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        for user_id, password in (
            ("admin", "wrong"),
            ("nobody", "pw"),
            ("", "pw"),
            ("admin", ""),
            ("admin", "p" * 5000),
        ):
            request = apb.UserLoginRequest(id=user_id, password=password)
            await fails("authentication failed", p.api.UserLogin(request, FakeContext()))

    run(tmp_path, scenario)


def test_tokens_expire_and_belong_to_their_user(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        token = dict((await p.login("admin")).invocation_metadata())["token"]
        await p.add("eve", FO)
        await fails("authentication failed", p.authenticate("eve", token))
        await fails("authentication failed", p.authenticate("admin", "wrong"))
        await fails("authentication failed", p.internal.UserAuthenticate(apb.UserAuthenticateRequest(), FakeContext()))
        p.clock.now = NOW + 86_399
        await p.authenticate("admin", token)
        p.clock.now = NOW + 86_400
        await fails("authentication failed", p.authenticate("admin", token))

    run(tmp_path, scenario)


def test_list_users_as_admin_and_as_data_owner_manager(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        for user_id, role in (("do-a2", DO_A), ("do-a1", DO_A), ("do-b", DO_B), ("dom-a", DOM_A), ("fo", FO)):
            await p.add(user_id, role)
        admin = await p.login("admin")
        await fails("invalid user id", p.api.ListUsers(apb.ListUsersRequest(id=""), admin))
        everyone = await p.api.ListUsers(apb.ListUsersRequest(id="ignored"), admin)
        assert list(everyone.ids) == ["admin", "do-a1", "do-a2", "do-b", "dom-a", "fo"]
        dom = await p.login("dom-a")
        mine = await p.api.ListUsers(apb.ListUsersRequest(id="a"), dom)
        assert list(mine.ids) == ["do-a1", "do-a2"]
        await fails("permission denied", p.api.ListUsers(apb.ListUsersRequest(id="b"), dom))
        await fails("permission denied", p.api.ListUsers(apb.ListUsersRequest(id="a"), await p.login("fo")))

    run(tmp_path, scenario)


def test_reset_password_gives_a_32_hex_password_that_logs_in(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("do-a", DO_A, "old")
        await p.add("do-b", DO_B)
        await p.add("dom-a", DOM_A)
        dom = await p.login("dom-a")
        await fails("invalid user id", p.api.ResetUserPassword(apb.ResetUserPasswordRequest(id=""), dom))
        await fails("permission denied", p.api.ResetUserPassword(apb.ResetUserPasswordRequest(id="ghost"), dom))
        await fails("permission denied", p.api.ResetUserPassword(apb.ResetUserPasswordRequest(id="do-b"), dom))
        response = await p.api.ResetUserPassword(apb.ResetUserPasswordRequest(id="do-a"), dom)
        assert re.fullmatch("[0-9a-f]{32}", response.password)
        await p.login("do-a", response.password)
        await fails("authentication failed", p.login("do-a", "old"))
        assert p.store.get("do-a").role == DO_A

    run(tmp_path, scenario)


def test_delete_user_then_authenticate_fails(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("alice", FO)
        alice = await p.login("alice")
        token = dict(alice.invocation_metadata())["token"]
        await p.authenticate("alice", token)
        admin = await p.login("admin")
        await fails("permission denied", p.api.DeleteUser(apb.DeleteUserRequest(id="ghost"), admin))
        await fails("permission denied", p.api.DeleteUser(apb.DeleteUserRequest(id="admin"), alice))
        await p.api.DeleteUser(apb.DeleteUserRequest(id="alice"), admin)
        await fails("authentication failed", p.authenticate("alice", token))
        await fails("authentication failed", p.api.ListUsers(apb.ListUsersRequest(id="a"), alice))

    run(tmp_path, scenario)


def test_update_replaces_role_and_password(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("alice", FO, "old")
        await p.add("dom-a", DOM_A)
        admin = await p.login("admin")
        update = apb.UserUpdateRequest(id="ghost", password="new", role="DataOwner", attribute="a")
        await fails("invalid user id", p.api.UserUpdate(update, admin))
        update.id = "alice"
        update.role = "Bogus"
        await fails("invalid role", p.api.UserUpdate(update, admin))
        update.role = "DataOwner"
        await fails("permission denied", p.api.UserUpdate(update, await p.login("alice", "old")))
        # The quirk: a DataOwnerManager may turn any user, even a FunctionOwner, into its DataOwner.
        await p.api.UserUpdate(update, await p.login("dom-a"))
        assert p.store.get("alice").role == DO_A
        alice = await p.login("alice", "new")
        claims = await p.authenticate("alice", dict(alice.invocation_metadata())["token"])
        assert claims.role == "DataOwner-a"

    run(tmp_path, scenario)


def test_change_password_keeps_the_tokens_role(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("alice", FO, "old")
        alice = await p.login("alice", "old")
        await fails(
            "authentication failed", p.api.UserChangePassword(apb.UserChangePasswordRequest(password=""), alice)
        )
        await p.api.UserChangePassword(apb.UserChangePasswordRequest(password="new"), alice)
        await fails("authentication failed", p.login("alice", "old"))
        await p.login("alice", "new")
        assert p.store.get("alice").role == FO

    run(tmp_path, scenario)
