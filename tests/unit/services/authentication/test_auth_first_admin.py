"""The first platform admin: configured password, generated password file, existing admin untouched."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from cloister.config import AdminSettings, AuthenticationSettings, Settings
from cloister.errors import ConfigurationError
from cloister.model.roles import Role, RoleKind
from cloister.services.authentication.passwords import PasswordHasher
from cloister.services.authentication.service import ensure_first_admin, state_directory
from cloister.services.authentication.users import UserRecord, UserStore

FAST = AuthenticationSettings(argon2_memory_kib=64, argon2_time_cost=1)
HASHER = PasswordHasher(FAST)


def settings(tmp_path: Path, password: str | None = None, user: str = "admin") -> Settings:
    return Settings(
        state_dir=tmp_path,
        admin=AdminSettings(user=user, password=None if password is None else SecretStr(password)),
        authentication=FAST,
    )


def with_store(s: Settings, action):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        store = UserStore(state_directory(s))
        try:
            return await action(store)
        finally:
            store.close()

    return asyncio.run(main())


def test_configured_password(tmp_path: Path) -> None:
    s = settings(tmp_path, "configured-pw", user="root")

    async def action(store: UserStore) -> None:
        assert await ensure_first_admin(store, s) is None
        record = store.get("root")
        assert record is not None and record.role == Role(RoleKind.PLATFORM_ADMIN)
        HASHER.verify("configured-pw", record.password)
        assert store.get("admin") is None

    with_store(s, action)
    assert not (tmp_path / "admin-password").exists()


def test_generated_password_is_written_once_and_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = settings(tmp_path)
    password_file = tmp_path / "admin-password"

    async def first(store: UserStore) -> None:
        with caplog.at_level(logging.WARNING):
            assert await ensure_first_admin(store, s) == password_file
        password = password_file.read_text().strip()
        assert len(password) >= 24
        HASHER.verify(password, store.get("admin").password)
        assert str(password_file) in caplog.text
        assert password not in caplog.text

    with_store(s, first)
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    content = password_file.read_bytes()

    # The admin was lost (say the database was removed) but the file was kept: reuse its content.
    (tmp_path / "authentication" / "users.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "authentication" / f"users.db{suffix}").unlink(missing_ok=True)

    async def second(store: UserStore) -> None:
        assert await ensure_first_admin(store, s) == password_file
        HASHER.verify(content.decode().strip(), store.get("admin").password)

    with_store(s, second)
    assert password_file.read_bytes() == content


def test_existing_admin_is_left_untouched(tmp_path: Path) -> None:
    s = settings(tmp_path, "new-configured")
    existing = UserRecord("admin", Role(RoleKind.FUNCTION_OWNER), HASHER.hash("old"), "g")

    async def action(store: UserStore) -> None:
        assert await store.create(existing)
        assert await ensure_first_admin(store, s) is None
        assert store.get("admin") == existing
        assert await ensure_first_admin(store, settings(tmp_path)) is None
        assert store.get("admin") == existing

    with_store(s, action)
    assert not (tmp_path / "admin-password").exists()


def test_bad_admin_settings_are_configuration_errors(tmp_path: Path) -> None:
    async def action(store: UserStore) -> None:
        with pytest.raises(ConfigurationError):
            await ensure_first_admin(store, settings(tmp_path, "pw", user="bad\nname"))
        with pytest.raises(ConfigurationError):
            await ensure_first_admin(store, settings(tmp_path, ""))
        (tmp_path / "admin-password").write_text("")
        with pytest.raises(ConfigurationError, match="admin-password"):
            await ensure_first_admin(store, settings(tmp_path))
        assert store.list_ids() == []

    with_store(settings(tmp_path), action)


def test_settings_repr_never_shows_the_password(tmp_path: Path) -> None:
    s = settings(tmp_path, "hunter2")
    assert "hunter2" not in repr(s)


def test_a_deleted_first_admin_is_not_brought_back_while_other_admins_exist(tmp_path: Path) -> None:
    s = settings(tmp_path, "bootstrap-pw")

    async def action(store: UserStore) -> None:
        await ensure_first_admin(store, s)
        first = store.get("admin")
        assert await store.create(UserRecord("alice", Role(RoleKind.PLATFORM_ADMIN), HASHER.hash("pw"), "g"))
        assert await store.delete(first)
        assert await ensure_first_admin(store, s) is None  # the next start
        assert store.get("admin") is None

    with_store(s, action)
