"""The user database: §3.3 records, create/replace/delete, byte-ordered listing, id checks, persistence."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from cloister.errors import AuthenticationError
from cloister.model.roles import Role, RoleKind
from cloister.services.authentication.passwords import PasswordHash, hash_password
from cloister.services.authentication.users import UserRecord, UserStore, check_role, check_user_id

FAST = 1000
ADMIN = Role(RoleKind.PLATFORM_ADMIN)


def record(user_id: str, role: Role = ADMIN) -> UserRecord:
    return UserRecord(user_id, role, hash_password("pw", FAST))


def test_record_json_is_the_reference_format() -> None:
    password = PasswordHash(bytes(16), bytes(range(64)), 100_000)
    raw = UserRecord("alice", Role(RoleKind.DATA_OWNER, "org1"), password).to_json()
    assert json.loads(raw) == {
        "id": "alice",
        "role": {"DataOwner": "org1"},
        "salt": [0] * 16,
        "salted_password_hash": list(range(64)),
    }
    assert raw.startswith(b'{"id":"alice","role":{"DataOwner":"org1"},"salt":[0,')
    assert UserRecord.from_json(raw).password == password


def test_record_keeps_a_non_default_iteration_count() -> None:
    raw = record("bob", Role(RoleKind.FUNCTION_OWNER)).to_json()
    assert json.loads(raw)["pbkdf2_iterations"] == FAST
    assert json.loads(raw)["role"] == "FunctionOwner"
    assert UserRecord.from_json(raw).password.iterations == FAST


def test_store_round_trip(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = UserStore(tmp_path)
        try:
            assert store.get("alice") is None
            alice = record("alice")
            assert await store.create(alice)
            assert store.get("alice") == alice
            assert not await store.create(record("alice", Role(RoleKind.FUNCTION_OWNER)))
            assert store.get("alice") == alice
            replaced = record("alice", Role(RoleKind.DATA_OWNER, "x"))
            assert await store.replace(replaced)
            assert store.get("alice") == replaced
            assert not await store.replace(record("nobody"))
            assert store.get("nobody") is None
            assert await store.delete("alice")
            assert not await store.delete("alice")
            assert store.get("alice") is None
        finally:
            store.close()

    asyncio.run(scenario())


def test_listing_is_in_byte_order_and_survives_reopening(tmp_path: Path) -> None:
    ids = ["zed", "Zed", "a", "a-b", "ä", "aa", "a b", "b"]

    async def fill() -> None:
        store = UserStore(tmp_path)
        try:
            for user_id in ids:
                assert await store.create(record(user_id))
        finally:
            store.close()

    asyncio.run(fill())
    store = UserStore(tmp_path)
    try:
        expected = sorted(ids, key=lambda i: i.encode())
        assert store.list_ids() == expected
        assert [r.id for r in store.list_records()] == expected
    finally:
        store.close()
    assert stat.S_IMODE((tmp_path / "users.key").stat().st_mode) == 0o600


def test_concurrent_creates_of_one_id_store_one(tmp_path: Path) -> None:
    async def scenario() -> list[bool]:
        store = UserStore(tmp_path)
        try:
            return await asyncio.gather(*(store.create(record("same")) for _ in range(10)))
        finally:
            store.close()

    assert sorted(asyncio.run(scenario())) == [False] * 9 + [True]


def test_absurd_ids_are_simply_unknown(tmp_path: Path) -> None:
    store = UserStore(tmp_path)
    try:
        assert store.get("x" * 10_000) is None
        assert store.get("\ud800") is None
        assert store.get("") is None
    finally:
        store.close()


@pytest.mark.parametrize(
    "user_id", ["", "a\nb", "tab\there", "nul\x00", "del\x7f", "ls\u2028", "x" * 257, "ünï", "é" * 129]
)
def test_bad_user_ids_are_refused(user_id: str) -> None:
    with pytest.raises(AuthenticationError, match=r"^invalid user id$"):
        check_user_id(user_id)


@pytest.mark.parametrize("user_id", ["a", "alice@example.org", "user with spaces", "x" * 256])
def test_good_user_ids_pass(user_id: str) -> None:
    check_user_id(user_id)


def test_role_checks() -> None:
    check_role(Role.from_request("DataOwner", ""))
    check_role(Role.from_request("DataOwnerManager", "org-1"))
    for bad in (
        Role.from_request("Admin", ""),
        Role.from_request("DataOwner", "a\nb"),
        Role.from_request("DataOwner", "bänk"),  # would not fit in gRPC metadata
        Role(RoleKind.DATA_OWNER, "x" * 300),
    ):
        with pytest.raises(AuthenticationError, match=r"^invalid role$"):
            check_role(bad)
