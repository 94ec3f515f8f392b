"""Authentication RPCs called directly, with a fake context carrying the request metadata.

Decisions come from the packaged access policy evaluated in this process (``PolicyAuthorizer``);
the whole matrix against running services is tests/e2e/test_user_management.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from policy_authorizer import PolicyAuthorizer

from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_common_pb2 as cpb
from cloister.config import AuthenticationSettings
from cloister.errors import CloisterError, StatusCode
from cloister.model.roles import Role, RoleKind
from cloister.services.authentication.passwords import Argon2Hash, PasswordHasher, Pbkdf2Hash
from cloister.services.authentication.servicer import ApiServicer, InternalServicer
from cloister.services.authentication.throttle import TooManyFailedLoginsError
from cloister.services.authentication.tokens import JWTIssuer
from cloister.services.authentication.users import UserRecord, UserStore, new_generation

FAST = AuthenticationSettings(
    argon2_memory_kib=64, argon2_time_cost=1, login_failures_per_user=3, login_failures_per_address=5
)
HASHER = PasswordHasher(FAST)
NOW = 1_700_000_000.0


class FakeContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = (), peer: str = "ipv4:10.0.0.1:5000") -> None:
        self._metadata = metadata
        self._peer = peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


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
        self.authorizer = PolicyAuthorizer()
        self.issuer = JWTIssuer.load_or_create(directory, FAST.token_lifetime_seconds)
        self.api = ApiServicer(self.store, self.issuer, self.authorizer, FAST, clock=self.clock)
        self.internal = InternalServicer(self.store, self.issuer, clock=self.clock)

    async def add(self, user_id: str, role: Role, password: str = "pw") -> None:
        assert await self.store.create(UserRecord(user_id, role, HASHER.hash(password), new_generation()))

    async def login(self, user_id: str, password: str = "pw", peer: str = "ipv4:10.0.0.1:5000") -> FakeContext:
        request = apb.UserLoginRequest(id=user_id, password=password)
        response = await self.api.UserLogin(request, FakeContext(peer=peer))
        return FakeContext((("id", user_id), ("token", response.token)))

    async def authenticate(self, user_id: str, token: str) -> apb.UserAuthClaims:
        request = apb.UserAuthenticateRequest(credential=cpb.UserCredential(id=user_id, token=token))
        return (await self.internal.UserAuthenticate(request, FakeContext())).claims


ADMIN = Role(RoleKind.PLATFORM_ADMIN)
FO = Role(RoleKind.FUNCTION_OWNER)
FO_A = Role(RoleKind.FUNCTION_OWNER, "a")
FOM_A = Role(RoleKind.FUNCTION_OWNER_MANAGER, "a")
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
    """Every refusal of the authentication API travels as UNAUTHENTICATED (reference §2.2)."""
    with pytest.raises(CloisterError) as info:
        await call
    assert info.value.message == message
    assert info.value.status is StatusCode.UNAUTHENTICATED


def token_of(context: FakeContext) -> str:
    return dict(context.invocation_metadata())["token"]


def register(
    user_id: str, role: str = "DataOwner", attribute: str = "", password: str = "pw"
) -> apb.UserRegisterRequest:
    return apb.UserRegisterRequest(id=user_id, password=password, role=role, attribute=attribute)


def test_register_then_login_then_authenticate(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        admin = await p.login("admin")
        await p.api.UserRegister(register("alice", "DataOwner", "org1", "s3cret"), admin)
        alice = await p.login("alice", "s3cret")
        claims = await p.authenticate("alice", token_of(alice))
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
        await fails("invalid role", p.api.UserRegister(register("bob", role="Nonsense"), admin))
        await fails("invalid password", p.api.UserRegister(register("bob", password="x" * 5000), admin))
        await p.add("fo", FO)
        fo = await p.login("fo")
        await fails("permission denied", p.api.UserRegister(register("bob", "DataOwner", "a"), fo))
        # Teaclave let a FunctionOwner create a DataOwnerManager of any organisation: not here.
        await fails("permission denied", p.api.UserRegister(register("dom", "DataOwnerManager", "a"), fo))
        # Whether an id is taken is told only to someone allowed to register it.
        await fails("permission denied", p.api.UserRegister(register("admin", "DataOwner", "a"), fo))
        await p.api.UserRegister(register("empty", "DataOwner", "a", password=""), admin)  # accepted, as in Teaclave
        await fails(
            "authentication failed", p.api.UserLogin(apb.UserLoginRequest(id="empty", password=""), FakeContext())
        )

    run(tmp_path, scenario)


def test_managers_register_only_their_own_organisations_plain_users(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("dom-a", DOM_A)
        await p.add("fom-a", FOM_A)
        dom, fom = await p.login("dom-a"), await p.login("fom-a")
        await p.api.UserRegister(register("do-a", "DataOwner", "a"), dom)
        await p.api.UserRegister(register("fo-a", "FunctionOwner", "a"), fom)
        assert p.store.get("fo-a").role == FO_A
        for request, manager in (
            (register("x", "DataOwner", "b"), dom),
            (register("x", "DataOwner", ""), dom),
            (register("x", "DataOwnerManager", "a"), dom),
            (register("x", "PlatformAdmin"), dom),
            (register("x", "FunctionOwner", "a"), dom),
            (register("x", "FunctionOwner", "b"), fom),
            (register("x", "FunctionOwner", ""), fom),
            (register("x", "FunctionOwnerManager", "a"), fom),
            (register("x", "DataOwner", "a"), fom),
        ):
            await fails("permission denied", p.api.UserRegister(request, manager))
        assert p.store.get("x") is None

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


def test_list_users_as_admin_and_as_managers(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        for user_id, role in (
            ("do-a2", DO_A),
            ("do-a1", DO_A),
            ("do-b", DO_B),
            ("dom-a", DOM_A),
            ("fo", FO),
            ("fo-a", FO_A),
            ("fom-a", FOM_A),
        ):
            await p.add(user_id, role)
        admin = await p.login("admin")
        await fails("invalid user id", p.api.ListUsers(apb.ListUsersRequest(id=""), admin))
        everyone = await p.api.ListUsers(apb.ListUsersRequest(id="ignored"), admin)
        assert list(everyone.ids) == ["admin", "do-a1", "do-a2", "do-b", "dom-a", "fo", "fo-a", "fom-a"]
        dom = await p.login("dom-a")
        assert list((await p.api.ListUsers(apb.ListUsersRequest(id="a"), dom)).ids) == ["do-a1", "do-a2"]
        fom = await p.login("fom-a")
        assert list((await p.api.ListUsers(apb.ListUsersRequest(id="a"), fom)).ids) == ["fo-a"]
        await fails("permission denied", p.api.ListUsers(apb.ListUsersRequest(id="b"), dom))
        await fails("permission denied", p.api.ListUsers(apb.ListUsersRequest(id="a"), await p.login("fo")))
        await fails("permission denied", p.api.ListUsers(apb.ListUsersRequest(id="a"), await p.login("do-a1")))

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
        # Teaclave let a DataOwnerManager reset anyone whose role it could name; an admin is out of reach.
        await fails("permission denied", p.api.ResetUserPassword(apb.ResetUserPasswordRequest(id="admin"), dom))
        old_token = token_of(await p.login("do-a", "old"))
        response = await p.api.ResetUserPassword(apb.ResetUserPasswordRequest(id="do-a"), dom)
        assert re.fullmatch("[0-9a-f]{32}", response.password)
        await p.login("do-a", response.password)
        await fails("authentication failed", p.login("do-a", "old"))
        await fails("authentication failed", p.authenticate("do-a", old_token))
        assert p.store.get("do-a").role == DO_A

    run(tmp_path, scenario)


def test_delete_user_then_its_tokens_fail_even_after_re_creation(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("alice", FO)
        alice = await p.login("alice")
        await p.authenticate("alice", token_of(alice))
        admin = await p.login("admin")
        await fails("permission denied", p.api.DeleteUser(apb.DeleteUserRequest(id="ghost"), admin))
        await fails("permission denied", p.api.DeleteUser(apb.DeleteUserRequest(id="admin"), alice))
        await fails("permission denied", p.api.DeleteUser(apb.DeleteUserRequest(id="admin"), admin))  # not oneself
        await p.api.DeleteUser(apb.DeleteUserRequest(id="alice"), admin)
        await fails("authentication failed", p.authenticate("alice", token_of(alice)))
        await fails("authentication failed", p.api.ListUsers(apb.ListUsersRequest(id="a"), alice))
        await p.api.UserRegister(register("alice", "FunctionOwner", "", "pw"), admin)
        await fails("authentication failed", p.authenticate("alice", token_of(alice)))
        await p.authenticate("alice", token_of(await p.login("alice")))

    run(tmp_path, scenario)


def test_update_replaces_role_and_password_and_ends_tokens(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("alice", FO, "old")
        await p.add("dom-a", DOM_A)
        admin = await p.login("admin")
        update = apb.UserUpdateRequest(id="ghost", password="new", role="DataOwner", attribute="a")
        await fails("invalid user id", p.api.UserUpdate(update, admin))
        await fails("permission denied", p.api.UserUpdate(update, await p.login("dom-a")))  # no existence told
        update.id = "alice"
        update.role = "Bogus"
        await fails("invalid role", p.api.UserUpdate(update, admin))
        update.role = "DataOwner"
        old = await p.login("alice", "old")
        await fails("permission denied", p.api.UserUpdate(update, old))  # nobody changes their own role
        # Teaclave let a DataOwnerManager turn any user, even a FunctionOwner, into its DataOwner: not here.
        await fails("permission denied", p.api.UserUpdate(update, await p.login("dom-a")))
        await p.api.UserUpdate(update, admin)
        assert p.store.get("alice").role == DO_A
        await fails("authentication failed", p.authenticate("alice", token_of(old)))
        alice = await p.login("alice", "new")
        assert (await p.authenticate("alice", token_of(alice))).role == "DataOwner-a"
        update.password = "newer"
        await p.api.UserUpdate(update, await p.login("dom-a"))  # now one of dom-a's own
        await p.login("alice", "newer")

    run(tmp_path, scenario)


def test_the_role_that_counts_is_the_stored_one(tmp_path: Path) -> None:
    """A token keeps claiming the role its user had at login; the claims the frontend acts on
    carry the stored one, and only while the token is of the user's current generation."""

    async def scenario(p: Platform) -> None:
        await p.add("boss", ADMIN)
        boss = await p.login("boss")
        record = p.store.get("boss")
        demoted = UserRecord("boss", FO, record.password, record.generation)  # as if the generation were kept
        assert await p.store.replace(record, demoted)
        assert (await p.authenticate("boss", token_of(boss))).role == "FunctionOwner"
        await fails("permission denied", p.api.UserRegister(register("x", "PlatformAdmin"), boss))

    run(tmp_path, scenario)


def test_change_password_keeps_the_stored_role_and_ends_tokens(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("alice", ADMIN, "old")
        alice = await p.login("alice", "old")
        admin = await p.login("admin")
        await p.api.UserUpdate(apb.UserUpdateRequest(id="alice", password="mid", role="FunctionOwner"), admin)
        alice = await p.login("alice", "mid")
        await fails(
            "authentication failed", p.api.UserChangePassword(apb.UserChangePasswordRequest(password=""), alice)
        )
        await p.api.UserChangePassword(apb.UserChangePasswordRequest(password="new"), alice)
        await fails("authentication failed", p.login("alice", "mid"))
        await fails("authentication failed", p.authenticate("alice", token_of(alice)))
        await p.login("alice", "new")
        assert p.store.get("alice").role == FO

    run(tmp_path, scenario)


def test_a_pbkdf2_hash_becomes_argon2id_at_the_next_login(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        import hashlib

        salt = bytes(range(16))
        legacy = Pbkdf2Hash(salt, hashlib.pbkdf2_hmac("sha512", b"teaclave", salt, 1000, 64), 1000)
        assert await p.store.create(UserRecord("old", DO_A, legacy, ""))
        await fails("authentication failed", p.login("old", "wrong"))
        assert p.store.get("old").password == legacy
        token = token_of(await p.login("old", "teaclave"))
        upgraded = p.store.get("old")
        assert isinstance(upgraded.password, Argon2Hash) and upgraded.generation
        await p.authenticate("old", token)
        await p.login("old", "teaclave")
        assert p.store.get("old") == upgraded  # upgraded once

    run(tmp_path, scenario)


def test_failed_logins_are_limited_per_user_id(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("alice", DO_A, "right")
        for attempt in range(3):
            await fails("authentication failed", p.login("alice", f"wrong{attempt}", peer=f"ipv4:10.0.1.{attempt}:1"))
        with pytest.raises(TooManyFailedLoginsError, match="for this user id") as info:
            await p.login("alice", "right", peer="ipv4:10.0.9.9:1")  # the right password waits too
        assert info.value.status is StatusCode.RESOURCE_EXHAUSTED
        assert "try again in 900 s" in info.value.message
        await p.login("admin")  # other users are not affected
        p.clock.now += 899
        with pytest.raises(TooManyFailedLoginsError):
            await p.login("alice", "right")
        p.clock.now += 1
        await p.login("alice", "right")
        await fails("authentication failed", p.login("alice", "wrong"))  # a success ends the count
        await fails("authentication failed", p.login("alice", "wrong"))
        await p.login("alice", "right")

    run(tmp_path, scenario)


def test_failed_logins_are_limited_per_address_whatever_the_user_id(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        for index in range(5):
            await fails("authentication failed", p.login(f"nobody{index}", "pw", peer="ipv6:[2001:db8::1]:7"))
        with pytest.raises(TooManyFailedLoginsError, match="from this address"):
            await p.login("admin", peer="ipv6:[2001:db8::1]:8")
        await p.login("admin", peer="ipv4:10.0.0.2:1")

    run(tmp_path, scenario)


def test_guesses_sent_all_at_once_are_counted_before_any_is_checked(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("victim", DO_A, "secret-7")
        checked: list[str] = []
        verify = p.api._hasher.verify

        def counting(password: str, stored: object) -> bool:
            checked.append(password)
            return verify(password, stored)  # type: ignore[arg-type]

        p.api._hasher.verify = counting  # type: ignore[method-assign]
        guesses = [p.login("victim", f"secret-{n}", peer=f"ipv4:10.0.2.{n}:1") for n in range(20)]
        results = await asyncio.gather(*guesses, return_exceptions=True)
        # Each is let in and counted before its hash starts: only the first three are checked.
        assert checked == ["secret-0", "secret-1", "secret-2"]
        assert sum(isinstance(r, TooManyFailedLoginsError) for r in results) == 17
        assert not any(isinstance(r, FakeContext) for r in results)

    run(tmp_path, scenario)


def test_a_login_racing_a_reset_gets_no_token(tmp_path: Path) -> None:
    """The password was checked against a hash that a reset replaced meanwhile: no token."""

    async def scenario(p: Platform) -> None:
        import hashlib

        salt = bytes(16)
        legacy = Pbkdf2Hash(salt, hashlib.pbkdf2_hmac("sha512", b"old", salt, 1000, 64), 1000)
        assert await p.store.create(UserRecord("old", DO_A, legacy, "g1"))
        admin = await p.login("admin")
        verify = p.api._hasher.verify

        def reset_meanwhile(password: str, stored: object) -> bool:
            outdated = verify(password, stored)  # type: ignore[arg-type]
            asyncio.run_coroutine_threadsafe(
                p.api.ResetUserPassword(apb.ResetUserPasswordRequest(id="old"), admin), loop
            ).result()
            return outdated

        loop = asyncio.get_running_loop()
        p.api._hasher.verify = reset_meanwhile  # type: ignore[method-assign]
        await fails("authentication failed", p.login("old", "old"))
        assert p.store.get("old").generation != "g1"

    run(tmp_path, scenario)


def test_a_manager_removed_while_acting_changes_nothing(tmp_path: Path) -> None:
    async def scenario(p: Platform) -> None:
        await p.add("dom-a", DOM_A)
        await p.add("do-a", DO_A, "old")
        dom = await p.login("dom-a")
        hash_ = p.api._hasher.hash

        def delete_manager_meanwhile(password: str) -> Argon2Hash:
            record = p.store.get("dom-a")
            asyncio.run_coroutine_threadsafe(p.store.delete(record), loop).result()
            return hash_(password)

        loop = asyncio.get_running_loop()
        p.api._hasher.hash = delete_manager_meanwhile  # type: ignore[method-assign]
        update = apb.UserUpdateRequest(id="do-a", password="chosen", role="DataOwner", attribute="a")
        await fails("invalid user id", p.api.UserUpdate(update, dom))
        p.api._hasher.hash = hash_  # type: ignore[method-assign]
        await p.login("do-a", "old")

    run(tmp_path, scenario)


def test_an_id_is_told_taken_and_reused_only_within_reach(tmp_path: Path) -> None:
    """Registering an id acts on whoever holds it or held it: a deleted user's id brings what it
    owned (files and functions name users by id), so another organisation may not take it."""

    async def scenario(p: Platform) -> None:
        await p.add("dom-a", DOM_A)
        await p.add("dom-b", Role(RoleKind.DATA_OWNER_MANAGER, "b"))
        await p.add("do-a", DO_A)
        await p.add("carol", DO_B)
        dom_a, dom_b, admin = await p.login("dom-a"), await p.login("dom-b"), await p.login("admin")
        await fails("permission denied", p.api.UserRegister(register("admin", "DataOwner", "a"), dom_a))
        await fails("permission denied", p.api.UserRegister(register("carol", "DataOwner", "a"), dom_a))
        await fails("user id exist", p.api.UserRegister(register("do-a", "DataOwner", "a"), dom_a))
        await p.api.DeleteUser(apb.DeleteUserRequest(id="carol"), dom_b)
        await fails("permission denied", p.api.UserRegister(register("carol", "DataOwner", "a"), dom_a))
        await p.api.UserRegister(register("carol", "DataOwner", "b"), dom_b)  # her own manager may
        await p.api.DeleteUser(apb.DeleteUserRequest(id="carol"), dom_b)
        await p.api.UserRegister(register("carol", "DataOwner", "a"), admin)  # an admin may
        assert p.store.get("carol").role == DO_A

    run(tmp_path, scenario)
