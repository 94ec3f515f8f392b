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


def test_allowed_networks_default_to_none(tmp_path: Path) -> None:
    assert load_settings(None, {}, state_dir=tmp_path).execution.allowed_networks == ()


def test_allowed_networks_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[execution]\nallowed_networks = ["10.0.0.0/8", "fd00::/8"]\n')
    assert load_settings(config, {}, state_dir=tmp_path).execution.allowed_networks == ("10.0.0.0/8", "fd00::/8")
    env = {"CLOISTER_EXECUTION__ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128"}
    assert load_settings(config, env, state_dir=tmp_path).execution.allowed_networks == ("127.0.0.0/8", "::1/128")
    env = {"CLOISTER_EXECUTION__ALLOWED_NETWORKS": ""}  # set but empty: the file's networks are overridden
    assert load_settings(config, env, state_dir=tmp_path).execution.allowed_networks == ()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10.0.0.1/8", "has host bits set"),
        ("localhost", "does not appear to be an IPv4 or IPv6 network"),
        ("127.0.0.0/33", "does not appear"),
        ("::1/129", "does not appear"),
    ],
)
def test_allowed_networks_must_be_networks(tmp_path: Path, value: str, reason: str) -> None:
    env = {"CLOISTER_EXECUTION__ALLOWED_NETWORKS": f"127.0.0.0/8,{value}"}
    with pytest.raises(ConfigurationError, match=r"execution\.allowed_networks") as caught:
        load_settings(None, env, state_dir=tmp_path)
    assert repr(value) in caught.value.message and reason in caught.value.message


def test_allowed_networks_must_be_a_list(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[execution]\nallowed_networks = 10\n")
    with pytest.raises(ConfigurationError, match=r"execution\.allowed_networks must be a list"):
        load_settings(config, {}, state_dir=tmp_path)
