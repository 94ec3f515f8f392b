"""User management against running services: the decision matrix of data/user_management_matrix.csv,
every cell run with fresh users in fresh organisations, and the token lifecycle.

A change to a user always ends the user's tokens, so "nothing changed" is checked by the
target's token still working.
"""

from __future__ import annotations

import csv
import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from conftest import Session, admin, audit_entries, login

from cloister.errors import AccessDeniedError, AuthenticationError, CloisterError, StatusCode
from cloister.sdk import AuthenticationService, FrontendService
from cloister.testing import RunningPlatform, start_platform

DATA = Path(__file__).parent / "data"
PASSWORD = "first-password"
NEW_PASSWORD = "second-password"
# Hashing cost does not change a decision; the production cost would only make the matrix slow.
FAST_HASHING = {
    "CLOISTER_AUTHENTICATION__ARGON2_MEMORY_KIB": "1024",
    "CLOISTER_AUTHENTICATION__ARGON2_TIME_COST": "1",
    "CLOISTER_AUTHENTICATION__LOGIN_FAILURES_PER_ADDRESS": "100000",
}


def _rows() -> list[dict[str, str]]:
    with (DATA / "user_management_matrix.csv").open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


MATRIX = _rows()
CALLERS = [name for name in MATRIX[0] if name not in ("rpc", "target")]
CELLS = [(row["rpc"], row["target"], caller, row[caller]) for row in MATRIX for caller in CALLERS]

PLAIN = {"function": "FunctionOwner", "data": "DataOwner"}
MANAGER = {"function": "FunctionOwnerManager", "data": "DataOwnerManager"}
OTHER_SIDE = {"function": "data", "data": "function"}
CALLER_ROLES = {
    "function_owner": ("FunctionOwner", "function"),
    "function_owner_manager": ("FunctionOwnerManager", "function"),
    "data_owner": ("DataOwner", "data"),
    "data_owner_manager": ("DataOwnerManager", "data"),
    "admin": ("PlatformAdmin", "data"),
    "anonymous": ("DataOwner", "data"),  # only to make a target of "self"
}
_numbers = itertools.count()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with start_platform(tmp_path_factory.mktemp("users"), env=FAST_HASHING) as running:
        yield running


@pytest.fixture(scope="module")
def root(platform: RunningPlatform) -> Iterator[Session]:
    session = admin(platform)
    yield session
    session.close()


def token_works(platform: RunningPlatform, user_id: str, token: str) -> bool:
    """Whether ``token`` still authenticates ``user_id`` on the authentication API."""
    with AuthenticationService(*platform.connection_args("authentication")) as client:
        client.metadata = {"id": user_id, "token": token}
        try:
            client.list_users("probe")
        except AccessDeniedError:
            return True
        except AuthenticationError as exc:
            assert exc.message == "authentication failed", exc.message
            return False
        return True


@dataclass
class Cell:
    """One cell's world: organisations A and B of its own, the caller and, unless it is the caller, the target."""

    platform: RunningPlatform
    root: Session
    caller: str
    number: int
    sessions: list[Session]

    @property
    def org_a(self) -> str:
        return f"a{self.number}"

    @property
    def org_b(self) -> str:
        return f"b{self.number}"

    @property
    def side(self) -> str:
        return CALLER_ROLES[self.caller][1]

    def role_of(self, target: str) -> tuple[str, str]:
        if target == "self":
            role = CALLER_ROLES[self.caller][0]
            return role, "" if role == "PlatformAdmin" else self.org_a
        return {
            "same_org": (PLAIN[self.side], self.org_a),
            "other_org": (PLAIN[self.side], self.org_b),
            "other_side": (PLAIN[OTHER_SIDE[self.side]], self.org_a),
            "manager": (MANAGER[self.side], self.org_a),
            "admin": ("PlatformAdmin", ""),
        }[target]

    def create(self, name: str, role: str, attribute: str) -> Session:
        user_id = f"u{self.number}-{name}"
        self.root.auth.user_register(user_id, PASSWORD, role, attribute)
        session = login(self.platform, user_id, PASSWORD)
        self.sessions.append(session)
        return session

    def close(self) -> None:
        for session in self.sessions:
            session.close()


def caller_client(cell: Cell) -> tuple[AuthenticationService, str]:
    """The caller's authentication client and id; an anonymous caller sends no ``id`` or token."""
    if cell.caller == "anonymous":
        client = AuthenticationService(*cell.platform.connection_args("authentication"))
        client.metadata = {"x-not-credentials": "1"}
        cell.sessions.append(_Closing(client))  # type: ignore[arg-type]
        return client, ""
    session = cell.create("caller", *cell.role_of("self"))
    return session.auth, session.user


class _Closing:
    def __init__(self, client: AuthenticationService) -> None:
        self._client = client

    def close(self) -> None:
        self._client.close()


def outcome(action: Callable[[], object]) -> tuple[str, object]:
    try:
        return "ok", action()
    except CloisterError as exc:
        # The authentication API answers every refusal UNAUTHENTICATED; the client names it.
        assert exc.status is StatusCode.UNAUTHENTICATED
        if isinstance(exc, AccessDeniedError):
            assert exc.message == "permission denied"
            return "denied", None
        assert isinstance(exc, AuthenticationError) and exc.message == "missing user id", exc.message
        return "unauthenticated", None


@pytest.mark.parametrize(("rpc", "target", "caller", "expected"), CELLS, ids=[f"{r}-{t}-{c}" for r, t, c, _ in CELLS])
def test_user_management_decision(
    platform: RunningPlatform, root: Session, rpc: str, target: str, caller: str, expected: str
) -> None:
    cell = Cell(platform, root, caller, next(_numbers), [])
    try:
        _run_cell(cell, rpc, target, expected)
    finally:
        cell.close()


def _run_cell(cell: Cell, rpc: str, target: str, expected: str) -> None:
    client, caller_id = caller_client(cell)
    role, attribute = cell.role_of(target)
    if rpc == "register":
        new_id = f"u{cell.number}-new"
        result, _ = outcome(lambda: client.user_register(new_id, NEW_PASSWORD, role, attribute))
        assert result == expected
        exists = new_id in cell.root.auth.list_users("all")
        assert exists == (result == "ok")
        if exists:
            cell.sessions.append(login(cell.platform, new_id, NEW_PASSWORD))
        return
    if rpc == "list":
        members = {name: cell.create(name, *cell.role_of(name)).user for name in ("same_org", "other_org", "manager")}
        members["other_side"] = cell.create("other_side", *cell.role_of("other_side")).user
        organisation = cell.org_a if target == "same_org" else cell.org_b
        result, listed = outcome(lambda: client.list_users(organisation))
        assert result == expected
        if result == "ok" and cell.caller == "admin":
            assert set(members.values()) | {caller_id} <= set(listed)  # type: ignore[arg-type]
        elif result == "ok":
            assert listed == [members["same_org"]]
        return
    if rpc == "change_password":
        token = client.metadata.get("token", "") if client.metadata else ""
        result, _ = outcome(lambda: client.user_change_password(NEW_PASSWORD))
        assert result == expected
        if result == "ok":
            assert not token_works(cell.platform, caller_id, token)
            cell.sessions.append(login(cell.platform, caller_id, NEW_PASSWORD))
        return

    if target == "self" and cell.caller != "anonymous":
        target_id, target_token = caller_id, client.metadata["token"]  # type: ignore[index]
    else:
        victim = cell.create(target, role, attribute)
        target_id, target_token = victim.user, victim.auth.metadata["token"]  # type: ignore[index]
    actions: dict[str, Callable[[], object]] = {
        "update": lambda: client.user_update(target_id, NEW_PASSWORD, role, attribute),
        "update_to_admin": lambda: client.user_update(target_id, NEW_PASSWORD, "PlatformAdmin", ""),
        "move_to_other_org": lambda: client.user_update(target_id, NEW_PASSWORD, role, cell.org_b),
        "delete": lambda: client.delete_user(target_id),
        "reset_password": lambda: client.reset_user_password(target_id),
    }
    result, answer = outcome(actions[rpc])
    assert result == expected
    assert token_works(cell.platform, target_id, target_token) == (result != "ok")
    if result != "ok":
        return
    if rpc == "delete":
        assert target_id not in cell.root.auth.list_users("all")
        return
    password = answer if rpc == "reset_password" else NEW_PASSWORD
    changed = login(cell.platform, target_id, password)  # type: ignore[arg-type]
    cell.sessions.append(changed)
    if rpc == "update_to_admin":
        assert target_id in changed.auth.list_users("all")  # an admin's listing
    if rpc == "move_to_other_org" and role in MANAGER.values():
        assert changed.auth.list_users(cell.org_b) == []  # manages B now, not A
        with pytest.raises(AccessDeniedError, match="permission denied"):
            changed.auth.list_users(cell.org_a)


def test_the_matrix_covers_every_rpc_caller_and_target() -> None:
    rpcs = {row["rpc"] for row in MATRIX}
    assert rpcs == {
        "register",
        "update",
        "update_to_admin",
        "move_to_other_org",
        "delete",
        "reset_password",
        "change_password",
        "list",
    }
    targets = {"self", "same_org", "other_org", "other_side", "manager", "admin"}
    for rpc in rpcs - {"change_password", "list"}:
        assert {row["target"] for row in MATRIX if row["rpc"] == rpc} == targets
    assert set(CALLERS) == set(CALLER_ROLES)


# --- token lifecycle -------------------------------------------------------------------------


def refused_everywhere(platform: RunningPlatform, session: Session) -> bool:
    """Whether the session's token is refused by the authentication API and by the frontend."""
    token = session.auth.metadata["token"]  # type: ignore[index]
    api_refuses = not token_works(platform, session.user, token)
    try:
        session.frontend.list_functions(session.user)
        frontend_refuses = False
    except AuthenticationError as exc:
        assert exc.message == "incorrent credential"
        frontend_refuses = True
    assert api_refuses == frontend_refuses, "the two endpoints disagree about a token"
    return api_refuses


def test_every_change_to_a_user_ends_its_tokens(platform: RunningPlatform, root: Session) -> None:
    root.auth.user_register("cycle", "pw-1", "DataOwner", "cycle-org")
    first = login(platform, "cycle", "pw-1")
    assert not refused_everywhere(platform, first)

    first.auth.user_change_password("pw-2")
    assert refused_everywhere(platform, first)
    second = login(platform, "cycle", "pw-2")
    assert not refused_everywhere(platform, second)

    reset = root.auth.reset_user_password("cycle")
    assert refused_everywhere(platform, second)
    third = login(platform, "cycle", reset)

    root.auth.user_update("cycle", "pw-4", "FunctionOwner", "cycle-org")
    assert refused_everywhere(platform, third)
    fourth = login(platform, "cycle", "pw-4")
    assert not refused_everywhere(platform, fourth)

    root.auth.delete_user("cycle")
    assert refused_everywhere(platform, fourth)
    root.auth.user_register("cycle", "pw-4", "FunctionOwner", "cycle-org")  # same id, same password, same role
    assert refused_everywhere(platform, fourth)
    fifth = login(platform, "cycle", "pw-4")
    assert not refused_everywhere(platform, fifth)
    for session in (first, second, third, fourth, fifth):
        session.close()


def test_a_demoted_admin_keeps_no_rights(platform: RunningPlatform, root: Session) -> None:
    root.auth.user_register("boss", "boss-pw", "PlatformAdmin", "")
    boss = login(platform, "boss", "boss-pw")
    boss.frontend.query_audit_logs("", 1)  # an admin's call
    root.auth.user_update("boss", "boss-pw", "DataOwner", "boss-org")
    assert refused_everywhere(platform, boss)
    again = login(platform, "boss", "boss-pw")
    with pytest.raises(AccessDeniedError):
        again.frontend.query_audit_logs("", 1)
    again.auth.user_change_password("boss-pw-2")  # must not write the old role back
    third = login(platform, "boss", "boss-pw-2")
    with pytest.raises(AccessDeniedError):
        third.frontend.query_audit_logs("", 1)
    with pytest.raises(AccessDeniedError, match="permission denied"):
        third.auth.user_register("boss-friend", "pw", "PlatformAdmin", "")
    for session in (boss, again, third):
        session.close()


def test_user_management_decisions_are_audited(platform: RunningPlatform, root: Session) -> None:
    root.auth.user_register("audit-dom", "pw", "DataOwnerManager", "audit-org")
    manager = login(platform, "audit-dom", "pw")
    with pytest.raises(CloisterError, match="permission denied"):
        manager.auth.reset_user_password(platform.admin_user)
    manager.close()
    denied = audit_entries(root, f'message:"authorize user.reset_password user {platform.admin_user}"', 1)
    assert denied and not denied[0]["result"]
    assert denied[0]["user"] == '{ user: audit-dom, role: DataOwnerManager("audit-org") }'
    failed_call = audit_entries(root, 'message:"reset_user_password: permission denied"', 1)
    assert failed_call and not failed_call[0]["result"]


def test_failed_logins_are_limited_and_audited(tmp_path: Path) -> None:
    limits = {"CLOISTER_AUTHENTICATION__LOGIN_FAILURES_PER_USER": "3", **FAST_HASHING}
    with start_platform(tmp_path, env=limits) as running:
        root = admin(running)
        root.auth.user_register("guessed", "the-password", "DataOwner", "org")
        root.auth.user_register("rushed", "password-19", "DataOwner", "org")
        with AuthenticationService(*running.connection_args("authentication")) as client:
            for guess in range(3):
                with pytest.raises(AuthenticationError, match="authentication failed"):
                    client.user_login("guessed", f"guess-{guess}")
            with pytest.raises(CloisterError) as info:
                client.user_login("guessed", "the-password")
            assert info.value.status is StatusCode.RESOURCE_EXHAUSTED
            assert "too many failed logins for this user id" in info.value.message

            def guess(n: int) -> str:
                try:
                    client.user_login("rushed", f"password-{n}")
                except CloisterError as exc:
                    return exc.status.name
                return "OK"

            with ThreadPoolExecutor(20) as pool:  # all at once: none may slip past the count
                answers = list(pool.map(guess, range(20)))
            assert answers.count("UNAUTHENTICATED") + answers.count("OK") <= 3
            assert answers.count("RESOURCE_EXHAUSTED") >= 17
        # Newer seconds first, in stored order within a second: which user's refusal comes first
        # depends on whether the two fell in one second, so look for both.
        entries = audit_entries(root, 'message:"too many failed logins"', 1 + 17)
        assert all(not entry["result"] for entry in entries)
        refused = [entry["user"] for entry in entries]
        assert refused.count("{ user: guessed }") == 1 and refused.count("{ user: rushed }") >= 17
        other = FrontendService(*running.connection_args("frontend"))  # others are unaffected
        other.metadata = dict(root.auth.metadata or {})
        other.list_functions(running.admin_user)
        other.close()
        root.close()


def test_another_organisation_cannot_take_a_deleted_users_id(platform: RunningPlatform, root: Session) -> None:
    """Files and functions name their users by id: re-registering a deleted id inherits them."""
    root.auth.user_register("reuse-dom-1", "pw", "DataOwnerManager", "reuse-1")
    root.auth.user_register("reuse-dom-2", "pw", "DataOwnerManager", "reuse-2")
    first, second = login(platform, "reuse-dom-1", "pw"), login(platform, "reuse-dom-2", "pw")
    second.auth.user_register("reused", "pw", "DataOwner", "reuse-2")
    with pytest.raises(AccessDeniedError, match="permission denied"):  # not "user id exist"
        first.auth.user_register("reused", "pw", "DataOwner", "reuse-1")
    second.auth.delete_user("reused")
    with pytest.raises(AccessDeniedError, match="permission denied"):
        first.auth.user_register("reused", "pw", "DataOwner", "reuse-1")
    second.auth.user_register("reused", "pw-2", "DataOwner", "reuse-2")
    login(platform, "reused", "pw-2").close()
    first.close()
    second.close()


def test_callers_who_fail_authentication_are_audited_as_nobody(platform: RunningPlatform, root: Session) -> None:
    """Neither a claimed id nor a role claimed in a token that does not verify reaches the audit log."""
    claimed = "admin, role: PlatformAdmin"
    with AuthenticationService(*platform.connection_args("authentication")) as client:
        client.metadata = {"id": claimed, "token": "not-a-token"}
        with pytest.raises(AuthenticationError, match="authentication failed"):
            client.delete_user("someone")
    entries = audit_entries(root, 'message:"delete_user: authentication failed"', 1)
    assert entries and all(entry["user"] == "" for entry in entries)

    claims = {"sub": "forger", "role": "PlatformAdmin", "iss": "Teaclave", "exp": int(time.time()) + 600, "gen": "x"}
    forged = jwt.encode(claims, b"k" * 64, algorithm="HS512")
    with FrontendService(*platform.connection_args("frontend")) as frontend:
        frontend.metadata = {"id": "forger", "token": forged}
        with pytest.raises(AuthenticationError, match="incorrent credential"):
            frontend.disable_function("function-00000000-0000-0000-0000-000000000000")
    audit_entries(root, 'message:"authenticate to disable_function"', 1)
    with pytest.raises(CloisterError):  # no such function, but access control was asked about the API
        root.frontend.get_function_usage_stats("function-00000000-0000-0000-0000-000000000001")
    audit_entries(root, 'message:"authorize api get_function_usage_stats"', 1)  # access control's entries are in
    assert audit_entries(root, 'message:"authorize api disable_function"', 0) == []
