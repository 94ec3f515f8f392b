"""Settings: defaults, TOML file, environment overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.config import load_settings
from cloister.errors import ConfigurationError


def test_defaults_follow_teaclave_ports(tmp_path: Path) -> None:
    settings = load_settings(None, {"CLOISTER_STATE_DIR": str(tmp_path)})
    assert settings.state_dir == tmp_path.resolve()
    assert settings.endpoint("frontend").port == 7777
    assert settings.endpoint("authentication_api").port == 7776
    assert settings.admin.user == "admin" and settings.admin.password is None


def test_file_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[endpoints]\nfrontend = "0.0.0.0:9000"\n[scheduler]\nexecutor_timeout_seconds = 5\n')
    env = {"CLOISTER_SCHEDULER__EXECUTOR_TIMEOUT_SECONDS": "7", "CLOISTER_ADMIN_PASSWORD": "s3cret"}
    settings = load_settings(config, env, state_dir=tmp_path)
    assert settings.endpoint("frontend").port == 9000
    assert settings.scheduler.executor_timeout_seconds == 7.0
    assert settings.admin.password is not None
    assert settings.admin.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nonsense]\n", "unknown configuration sections"),
        ("[scheduler]\nbogus = 1\n", "unknown setting"),
        ('[endpoints]\nfrontend = "nope"\n', "HOST:PORT"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(config, {}, state_dir=tmp_path)
