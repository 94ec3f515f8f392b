"""``[audit]``: retention keeps every entry unless set, and exports under the state directory by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.config import load_settings
from cloister.errors import ConfigurationError


def test_entries_are_kept_for_ever_unless_a_retention_is_set(tmp_path: Path) -> None:
    settings = load_settings(env={}, state_dir=tmp_path)
    assert settings.audit.retention_days == 0
    assert settings.audit_export_dir == tmp_path.resolve() / "audit-export"


def test_retention_and_export_directory_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "cloister.toml"
    config.write_text('[audit]\nretention_days = 90\nexport_dir = "/srv/audit"\n')
    settings = load_settings(config, {"CLOISTER_AUDIT__RETENTION_INTERVAL_SECONDS": "60"}, state_dir=tmp_path)
    assert settings.audit.retention_days == 90
    assert settings.audit_export_dir == Path("/srv/audit")
    assert settings.audit.retention_interval_seconds == 60


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLOISTER_AUDIT__RETENTION_DAYS": "-1"}, "[audit] retention_days must be at least 0"),
        ({"CLOISTER_AUDIT__RETENTION_INTERVAL_SECONDS": "0"}, "[audit] retention_interval_seconds must be more than 0"),
    ],
)
def test_bad_values_say_what_is_wrong(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env=env, state_dir=tmp_path)
    ((variable, value),) = env.items()
    assert caught.value.message == f"{message}, not {variable}={value}"
