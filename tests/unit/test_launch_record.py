"""What ``cloister up`` leaves for ``cloister status``: its settings file and endpoints, never a secret;
and the reason a service gave for not running, read back from its log."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cloister.config import load_settings
from cloister.errors import ConfigurationError
from cloister.launcher import LAUNCH_RECORD, LaunchRecord, last_fatal_message


def test_the_record_gives_status_the_endpoints_up_had(tmp_path: Path) -> None:
    config = tmp_path / "cloister.toml"
    config.write_text('[endpoints]\nfrontend = "127.0.0.1:0"\n')
    env = {"CLOISTER_ENDPOINTS__STORAGE": "127.0.0.1:27001", "CLOISTER_ADMIN_PASSWORD": "hunter2-not-kept"}
    started = load_settings(config, env, state_dir=tmp_path)
    LaunchRecord.of(started, config).write(tmp_path)

    path = tmp_path / LAUNCH_RECORD
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "hunter2" not in path.read_text()
    record = LaunchRecord.read(tmp_path)
    assert record is not None and record.config_path == config.resolve()
    later = load_settings(record.config_path, record.environment(), state_dir=tmp_path)  # another shell
    assert later.endpoint("storage").address == "127.0.0.1:27001"
    assert later.endpoint("frontend").address == "127.0.0.1:0"
    assert later.endpoint("authentication_api").address == "127.0.0.1:7776"
    assert later.tee_backend == started.tee_backend


def test_the_record_says_whether_up_started_the_console_and_where(tmp_path: Path) -> None:
    started = load_settings(None, {"CLOISTER_CONSOLE__ADDRESS": "127.0.0.1:18780"}, state_dir=tmp_path)
    LaunchRecord.of(started, None, console=True).write(tmp_path)
    record = LaunchRecord.read(tmp_path)
    assert record is not None and record.console == "127.0.0.1:18780"
    later = load_settings(None, record.environment(), state_dir=tmp_path)
    assert later.console.enabled and later.console.address.address == "127.0.0.1:18780"

    LaunchRecord.of(started, None).write(tmp_path)  # started without it
    record = LaunchRecord.read(tmp_path)
    assert record is not None and record.console is None
    assert not load_settings(None, record.environment(), state_dir=tmp_path).console.enabled

    older = {"config": None, "endpoints": {}, "tee_backend": "sim"}  # an earlier version's record
    (tmp_path / LAUNCH_RECORD).write_text(json.dumps(older))
    record = LaunchRecord.read(tmp_path)
    assert record is not None and record.console is None


def test_no_record_before_the_first_start(tmp_path: Path) -> None:
    assert LaunchRecord.read(tmp_path) is None


@pytest.mark.parametrize(
    "text",
    [
        "{",
        '{"config": 3, "endpoints": {}, "tee_backend": "sim"}',
        "[]",
        '{"config": null, "endpoints": {}, "tee_backend": "sim", "console": 7780}',
    ],
)
def test_a_broken_record_is_refused_with_what_to_do(tmp_path: Path, text: str) -> None:
    (tmp_path / LAUNCH_RECORD).write_text(text)
    with pytest.raises(ConfigurationError, match=r"is unreadable .*start the platform again"):
        LaunchRecord.read(tmp_path)


def test_the_last_fatal_message_of_a_service_log(tmp_path: Path) -> None:
    log = tmp_path / "frontend.log"
    records = [
        {"level": "INFO", "message": "starting"},
        {"level": "CRITICAL", "message": "cannot run: an old reason"},
        {"level": "CRITICAL", "message": "cannot run: cannot listen on 127.0.0.1:7777"},
        {"level": "INFO", "message": "after"},
    ]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json, a line cut short")
    assert last_fatal_message(log) == "cannot run: cannot listen on 127.0.0.1:7777"
    assert last_fatal_message(tmp_path / "absent.log") is None
