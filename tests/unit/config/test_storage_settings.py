"""``[storage]``: the engine choice, PostgreSQL's DSN and its password file, and that neither leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.config import load_settings
from cloister.crypto.sealing import Sealer
from cloister.errors import ConfigurationError
from cloister.storage.engine import open_storage
from cloister.storage.postgres import PostgresStore, redact_dsn
from cloister.storage.sqlite import SQLiteStorage

SEALER = Sealer(bytes(32))


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    settings = load_settings(None, {}, state_dir=tmp_path)
    assert settings.storage.backend == "sqlite"
    store = open_storage(settings, SEALER)
    assert isinstance(store, SQLiteStorage)
    store.store.close()


def test_postgres_from_the_environment(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret-pw\n")
    env = {
        "CLOISTER_STORAGE__BACKEND": "postgres",
        "CLOISTER_STORAGE__DSN": "postgresql://cloister@db.example:5432/cloister",
        "CLOISTER_STORAGE__DSN_PASSWORD_FILE": str(password_file),
    }
    settings = load_settings(None, env, state_dir=tmp_path)
    assert settings.storage.backend == "postgres"
    assert settings.storage.dsn_password_file == password_file
    assert "cloister@db.example" not in repr(settings)  # a DSN is a secret: it may hold a password
    store = open_storage(settings, SEALER)  # not started: nothing is reached yet
    assert isinstance(store, PostgresStore)


def test_postgres_without_a_dsn_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r'backend = "postgres" needs \[storage\] dsn'):
        load_settings(None, {"CLOISTER_STORAGE__BACKEND": "postgres"}, state_dir=tmp_path)


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="must be one of sqlite, postgres"):
        load_settings(None, {"CLOISTER_STORAGE__BACKEND": "mysql"}, state_dir=tmp_path)


def test_a_bad_dsn_is_refused_without_repeating_it(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[storage]\nbackend = "postgres"\ndsn = 5\n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config, {}, state_dir=tmp_path)
    assert "[storage] dsn" in caught.value.message
    env = {"CLOISTER_STORAGE__BACKEND": "postgres", "CLOISTER_STORAGE__DSN": "host=db password=hunter2 nosuchparam=1"}
    settings = load_settings(None, env, state_dir=tmp_path)
    with pytest.raises(ConfigurationError) as refused:
        open_storage(settings, SEALER)
    assert "hunter2" not in refused.value.message


def test_an_unreadable_password_file_is_a_configuration_error(tmp_path: Path) -> None:
    env = {
        "CLOISTER_STORAGE__BACKEND": "postgres",
        "CLOISTER_STORAGE__DSN": "postgresql://cloister@db.example/cloister",
        "CLOISTER_STORAGE__DSN_PASSWORD_FILE": str(tmp_path / "missing"),
    }
    settings = load_settings(None, env, state_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="dsn_password_file"):
        open_storage(settings, SEALER)
    (tmp_path / "missing").write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        open_storage(settings, SEALER)


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://cloister:hunter2@db.example:5432/cloister", "host=db.example user=cloister password=hunter2"],
)
def test_redacted_dsns_keep_everything_but_the_password(dsn: str) -> None:
    shown = redact_dsn(dsn)
    assert "hunter2" not in shown
    assert "db.example" in shown and "cloister" in shown
