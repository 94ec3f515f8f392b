"""The user database: records, create/replace/delete, byte-ordered listing, id checks, persistence."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from cloister.config import AuthenticationSettings
from cloister.errors import AuthenticationError
from cloister.model.roles import Role, RoleKind
from cloister.services.authentication.passwords import PasswordHasher, Pbkdf2Hash
from cloister.services.authentication.users import UserRecord, UserStore, check_role, check_user_id, new_generation
from cloister.storage.ops import Put

HASHER = PasswordHasher(AuthenticationSettings(argon2_memory_kib=64, argon2_time_cost=1))
ADMIN = Role(RoleKind.PLATFORM_ADMIN)


def record(user_id: str, role: Role = ADMIN) -> UserRecord:
    return UserRecord(user_id, role, HASHER.hash("pw"), new_generation())


def test_record_json_round_trips_with_its_generation() -> None:
    alice = record("alice", Role(RoleKind.DATA_OWNER, "org1"))
    data = json.loads(alice.to_json())
    assert data == {
        "id": "alice",
        "role": {"DataOwner": "org1"},
        "generation": alice.generation,
        "password": alice.password.encoded,  # type: ignore[union-attr]
    }
    assert UserRecord.from_json(alice.to_json()) == alice


def test_a_reference_record_reads_as_pbkdf2_without_a_generation() -> None:
    raw = json.dumps(
        {"id": "bob", "role": "FunctionOwner", "salt": [0] * 16, "salted_password_hash": list(range(64))}
    ).encode()
    bob = UserRecord.from_json(raw)
    assert bob.password == Pbkdf2Hash(bytes(16), bytes(range(64)), 100_000)
    assert bob.generation == ""
    assert UserRecord.from_json(bob.to_json()) == bob


def test_generations_are_unique() -> None:
    assert len({new_generation() for _ in range(1000)}) == 1000


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
            assert await store.replace(alice, replaced)
            assert store.get("alice") == replaced
            assert not await store.replace(record("nobody"), record("nobody"))
            assert store.get("nobody") is None
            assert not await store.delete(alice)  # no longer what is stored
            assert await store.delete(replaced)
            assert not await store.delete(replaced)
            assert store.get("alice") is None
        finally:
            store.close()

    asyncio.run(scenario())


def test_a_replace_decided_on_an_old_record_stores_nothing(tmp_path: Path) -> None:
    """A manager's change decided while the target was a DataOwner must not land once an admin
    has made the target an admin in between."""

    async def scenario() -> None:
        store = UserStore(tmp_path)
        try:
            seen = record("target", Role(RoleKind.DATA_OWNER, "a"))
            assert await store.create(seen)
            promoted = UserRecord("target", ADMIN, seen.password, new_generation())
            assert await store.replace(seen, promoted)
            assert not await store.replace(seen, record("target", Role(RoleKind.DATA_OWNER, "a")))
            assert not await store.delete(seen)
            assert store.get("target") == promoted
            with pytest.raises(ValueError, match="id"):
                await store.replace(promoted, record("other"))
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


def test_the_database_file_names_no_user(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = UserStore(tmp_path)
        try:
            alice = record("alice-the-unmistakable")
            assert await store.create(alice)
            assert await store.delete(alice)
            assert await store.create(record("bob-the-unmistakable", Role(RoleKind.FUNCTION_OWNER)))
        finally:
            store.close()

    asyncio.run(scenario())
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("users.db*"))
    assert raw
    for user_id in (b"alice-the-unmistakable", b"bob-the-unmistakable"):
        assert user_id not in raw and user_id.hex().encode() not in raw


def test_records_under_keys_that_name_their_user_are_renamed_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = UserStore(tmp_path)
        try:
            carol, dave = record("carol"), record("0123456789abcdef0123456789abcdef")  # an id shaped like a tag
            gone = json.dumps({"id": "erin", "role": ADMIN.to_json()}).encode()
            # As earlier versions stored them.
            legacy = [Put(b"user-carol", carol.to_json()), Put(b"user-" + dave.id.encode(), dave.to_json())]
            await store._store.commit([*legacy, Put(b"gone-erin", gone)])
            assert await store.upgrade_keys() == 3
            assert store.get("carol") == carol and store.get(dave.id) == dave
            assert store.former_role("erin") == ADMIN
            assert store.list_ids() == [dave.id, "carol"]
            assert all(b"carol" not in key and b"erin" not in key for key in store._store.keys_with_prefix(b"user"))
            assert await store.upgrade_keys() == 0
        finally:
            store.close()

    asyncio.run(scenario())
