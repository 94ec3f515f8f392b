"""Settings: defaults, TOML file, environment overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cloister.config import TEE_BACKENDS, load_settings
from cloister.errors import ConfigurationError


def test_defaults_follow_teaclave_ports(tmp_path: Path) -> None:
    settings = load_settings(None, {"CLOISTER_STATE_DIR": str(tmp_path)})
    assert settings.state_dir == tmp_path.resolve()
    assert settings.endpoint("frontend").port == 7777
    assert settings.endpoint("authentication_api").port == 7776
    assert settings.endpoint("attestation").address == "127.0.0.1:17781"
    assert settings.admin.user == "admin" and settings.admin.password is None
    with pytest.raises(KeyError):
        settings.endpoint("execution")


def test_file_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[endpoints]\nfrontend = "0.0.0.0:9000"\n[scheduler]\nexecutor_timeout_seconds = 5\n')
    env = {"CLOISTER_SCHEDULER__EXECUTOR_TIMEOUT_SECONDS": "7", "CLOISTER_ADMIN_PASSWORD": "s3cret"}
    settings = load_settings(config, env, state_dir=tmp_path)
    assert settings.endpoint("frontend").address == "0.0.0.0:9000"
    assert settings.scheduler.executor_timeout_seconds == 7.0
    assert settings.admin.password is not None
    assert settings.admin.password.get_secret_value() == "s3cret"


def test_environment_overrides_keep_their_documented_forms(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[execution]\nslots = 2\nlabels = ["gpu"]\n[admin]\nuser = "root-of-file"\n')
    env = {
        "CLOISTER_EXECUTION__EXECUTORS": "builtin, python",  # lists are comma-separated
        "CLOISTER_EXECUTION__LABELS": "",  # set but empty: the file's list is emptied
        "CLOISTER_ENDPOINTS__SCHEDULER": "10.0.0.5:0",  # how the launcher pins a restarted service's port
        "CLOISTER_LOGGING__LEVEL": "debug",
        "CLOISTER_ADMIN__USER": "long-form",
        "CLOISTER_ADMIN_USER": "short-form",  # the documented name wins over the long form
        "CLOISTER_TEE_BACKEND": "",  # empty: as if unset
        "CLOISTER_SHARED_DIR": "/elsewhere",  # not a setting: variables outside CLOISTER_<SECTION>__ are left alone
    }
    settings = load_settings(config, env, state_dir=tmp_path)
    assert settings.execution.slots == 2
    assert settings.execution.executors == ("builtin", "python")
    assert settings.execution.labels == ()
    assert settings.endpoint("scheduler").address == "10.0.0.5:0"
    assert settings.logging.level == "DEBUG"
    assert settings.admin.user == "short-form"
    assert settings.tee_backend == "sim"


def test_state_directory_precedence(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'state_dir = "{tmp_path / "from-file"}"\n')
    env = {"CLOISTER_STATE_DIR": str(tmp_path / "from-env")}
    assert load_settings(config, env, state_dir=tmp_path / "given").state_dir == tmp_path.resolve() / "given"
    assert load_settings(config, env).state_dir == tmp_path.resolve() / "from-env"
    assert load_settings(config, {"CLOISTER_STATE_DIR": ""}).state_dir == tmp_path.resolve() / "from-file"
    assert load_settings(None, {"XDG_STATE_HOME": str(tmp_path)}).state_dir == tmp_path.resolve() / "cloister"


def test_the_admin_password_never_shows(tmp_path: Path) -> None:
    settings = load_settings(None, {"CLOISTER_ADMIN_PASSWORD": "hunter2"}, state_dir=tmp_path)
    assert settings.admin.password is not None and settings.admin.password.get_secret_value() == "hunter2"
    for shown in (repr(settings), str(settings), repr(settings.admin), settings.model_dump_json()):
        assert "hunter2" not in shown
    config = tmp_path / "c.toml"
    for text in ("[admin]\npassword = 77665544\n", '[admin]\npasword = "hunter2"\n', 'admin = "hunter2"\n'):
        config.write_text(text)
        with pytest.raises(ConfigurationError) as caught:
            load_settings(config, {}, state_dir=tmp_path)
        assert "hunter2" not in caught.value.message and "77665544" not in caught.value.message


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(None, {}, state_dir=tmp_path)
    with pytest.raises(ValidationError):
        settings.execution.slots = 99  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.tee_backend = "sgx"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[executon]\nslots = 2\n",
            "[executon] is not a section (did you mean execution?); the sections are endpoints, admin, "
            "authentication, attestation, access_control, storage, scheduler, audit, execution, sandbox, rpc, logging",
        ),
        (
            "[execution]\nslot = 2\n",
            "[execution] slot is not a setting (did you mean slots?); known: slots, executors, labels, "
            "heartbeat_seconds, schedulers, work_dir, fusion_base_dir, file_roots, max_file_bytes, "
            "transfer_timeout_seconds, allowed_networks",
        ),
        (
            "tee_backnd = 'sim'\n",
            "tee_backnd is not a setting (did you mean tee_backend?); known: state_dir, tee_backend",
        ),
        ('[logging]\nformat = "json"\n', "[logging] format is not a setting; known: level, max_bytes, backup_count"),
        (
            '[storage]\nengine = "sqlite"\n',
            "[storage] engine is not a setting; known: backend, path, dsn, dsn_password_file",
        ),
        (
            '[endpoints]\nfrontend = { host = "0.0.0.0", prot = 1 }\n',
            "[endpoints] frontend.prot is not a setting (did you mean port?); known: host, port",
        ),
        ('instance = "second"\n', "instance cannot be set in {config}: use CLOISTER_INSTANCE or --instance"),
        ("_cli_parse_args = true\n", "_cli_parse_args is not a setting; known: state_dir, tee_backend"),
    ],
)
def test_unknown_sections_and_keys_are_refused(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config, {}, state_dir=tmp_path)
    assert caught.value.message.startswith(message.format(config=config))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CLOISTER_EXECUTON__SLOTS": "2"},
            "CLOISTER_EXECUTON__SLOTS names no section of the settings (did you mean execution?)",
        ),
        (
            {"CLOISTER_SANDBOX__MEMORY": "1"},
            "[sandbox] memory (CLOISTER_SANDBOX__MEMORY) is not a setting (did you mean memory_bytes?)",
        ),
    ],
)
def test_unknown_variables_are_refused(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(None, env, state_dir=tmp_path)
    assert caught.value.message.startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[execution]\nslots = true\n", "[execution] slots must be a number, not true"),
        ('[execution]\nslots = "many"\n', '[execution] slots must be a whole number, not "many"'),
        ("[execution]\nslots = 2.5\n", "[execution] slots must be a whole number, not 2.5"),
        ("[sandbox]\nmemory_bytes = false\n", "[sandbox] memory_bytes must be a number, not false"),
        ("[rpc]\ncall_timeout_seconds = true\n", "[rpc] call_timeout_seconds must be a number, not true"),
        ("[rpc]\ncall_timeout_seconds = nan\n", "[rpc] call_timeout_seconds must be a finite number, not NaN"),
        ("[endpoints]\nfrontend = { port = true }\n", "[endpoints] frontend.port must be a number, not true"),
        ("[endpoints]\nfrontend = 7777\n", "[endpoints] frontend must be a table, not 7777"),
        (
            '[execution]\nallowed_networks = "10.0.0.0/8"\n',
            '[execution] allowed_networks must be a list, not "10.0.0.0/8"',
        ),
        ("[logging]\nlevel = 10\n", "[logging] level must be a string, not 10"),
        ("execution = 4\n", "[execution] must be a table, not 4"),
        ("[access_control]\npolicy_dir = 1\n", "[access_control] policy_dir must be a path, not 1"),
    ],
)
def test_wrong_types_are_refused(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config, {}, state_dir=tmp_path)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[execution]\nslots = -1\n", "[execution] slots must be at least 1, not -1"),
        ("[execution]\nslots = 0\n", "[execution] slots must be at least 1, not 0"),
        ("[sandbox]\nscratch_bytes = 0\n", "[sandbox] scratch_bytes must be at least 1, not 0"),
        ("[sandbox]\nprepared_sandboxes = -1\n", "[sandbox] prepared_sandboxes must be at least 0, not -1"),
        ("[sandbox]\nwall_seconds = 0\n", "[sandbox] wall_seconds must be more than 0, not 0"),
        ("[sandbox]\nfirst_task_uid = 999\n", "[sandbox] first_task_uid must be at least 1000, not 999"),
        (
            "[sandbox]\nfirst_task_uid = 4294967000\n",
            "[sandbox]: first_task_uid (4294967000) + task_uids (65536) must stay below 4294967294, the largest uid",
        ),
        (
            "[scheduler]\nexecutor_timeout_seconds = -5\n",
            "[scheduler] executor_timeout_seconds must be more than 0, not -5",
        ),
        ("[rpc]\npeer_timeout_seconds = 0\n", "[rpc] peer_timeout_seconds must be more than 0, not 0"),
        (
            "[rpc]\nmax_message_bytes = 4294967296\n",
            "[rpc] max_message_bytes must be at most 2147483647, not 4294967296",
        ),
        (
            "[rpc]\nmax_message_bytes = 67108864\n",
            "[rpc]: internal_max_message_bytes (67108864) must exceed max_message_bytes (67108864) by at least"
            " 8388608 bytes: what a request brings is passed on between services with more alongside",
        ),
        ("[rpc]\nlong_poll_seconds = 61\n", "[rpc] long_poll_seconds must be at most 60.0, not 61"),
        ('[endpoints]\nfrontend = "127.0.0.1:65536"\n', "[endpoints] frontend.port must be at most 65535, not 65536"),
        ('[endpoints]\nfrontend = "localhost"\n', '[endpoints] frontend must look like HOST:PORT, not "localhost"'),
        (
            '[logging]\nlevel = "LOUD"\n',
            '[logging] level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not "LOUD"',
        ),
        ("[logging]\nmax_bytes = 100\n", "[logging] max_bytes must be at least 1024, not 100"),
        (
            '[execution]\nexecutors = ["builtin", "cobol"]\n',
            '[execution] executors must list executor kinds among builtin, python, wasm, not "cobol"',
        ),
        ("[execution]\nexecutors = []\n", "[execution] executors must list at least one, not []"),
        ('[execution]\nlabels = ["gpu", ""]\n', '[execution] labels must not be empty, not ""'),
        (
            '[execution]\nfile_roots = ["data"]\n',
            "[execution] file_roots must list absolute paths (a relative one would depend on where the service runs), "
            'not "data"',
        ),
        ("[attestation]\nrequired_auditors = 0\n", "[attestation] required_auditors must be at least 1, not 0"),
        (
            "[attestation]\naccepted_quote_statuses = []\n",
            "[attestation] accepted_quote_statuses must list at least one, not []",
        ),
        (
            "[authentication]\nargon2_memory_kib = 64\nargon2_parallelism = 16\n",
            "[authentication]: argon2_memory_kib (64) must be at least 8 times argon2_parallelism (16)",
        ),
        ("[audit]\nretention_days = -1\n", "[audit] retention_days must be at least 0, not -1"),
        ('[admin]\nuser = ""\n', '[admin] user must not be empty, not ""'),
        ('tee_backend = "sgx2"\n', 'tee_backend must be one of sim, sgx, tdx, sev-snp, nitro, not "sgx2"'),
    ],
)
def test_out_of_range_values_are_refused(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config, {}, state_dir=tmp_path)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLOISTER_EXECUTION__SLOTS": "-2"}, "[execution] slots must be at least 1, not CLOISTER_EXECUTION__SLOTS=-2"),
        (
            {"CLOISTER_SANDBOX__MEMORY_BYTES": "2GiB"},
            "[sandbox] memory_bytes must be a whole number, not CLOISTER_SANDBOX__MEMORY_BYTES=2GiB",
        ),
        (
            {"CLOISTER_ENDPOINTS__FRONTEND": "7777"},
            "[endpoints] frontend must look like HOST:PORT, not CLOISTER_ENDPOINTS__FRONTEND=7777",
        ),
        ({"CLOISTER_INSTANCE": "a/b"}, "instance must be letters, digits, '-' or '_', not CLOISTER_INSTANCE=a/b"),
        (
            {"CLOISTER_TEE_BACKEND": "none"},
            "tee_backend must be one of sim, sgx, tdx, sev-snp, nitro, not CLOISTER_TEE_BACKEND=none",
        ),
    ],
)
def test_bad_variables_name_the_variable(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(None, env, state_dir=tmp_path)
    assert caught.value.message == message


def test_every_refused_setting_is_named_on_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[execution]\nslots = -1\n[logging]\nlevel = "LOUD"\n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config, {"CLOISTER_RPC__CALL_TIMEOUT_SECONDS": "0"}, state_dir=tmp_path)
    message = caught.value.message
    assert "\n" not in message
    assert sorted(message.split("; ")) == [
        "[execution] slots must be at least 1, not -1",
        '[logging] level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not "LOUD"',
        "[rpc] call_timeout_seconds must be more than 0, not CLOISTER_RPC__CALL_TIMEOUT_SECONDS=0",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "is not valid TOML"),
        (None, "does not exist"),
    ],
)
def test_unreadable_files_are_refused(tmp_path: Path, text: str | None, message: str) -> None:
    config = tmp_path / "c.toml"
    if text is not None:
        config.write_text(text)
    with pytest.raises(ConfigurationError, match=f"configuration file {config} {message}"):
        load_settings(config, {}, state_dir=tmp_path)


def test_every_accepted_tee_backend_is_one_the_attestation_layer_knows() -> None:
    from cloister.attestation.backends import check_backend

    for name in TEE_BACKENDS:
        try:
            check_backend(name, devices_root=Path("/nonexistent"))
        except ConfigurationError as exc:
            assert "unknown TEE backend" not in exc.message


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
    with pytest.raises(ConfigurationError) as caught:
        load_settings(None, env, state_dir=tmp_path)
    message = caught.value.message
    assert message.startswith("[execution] allowed_networks must list networks such as 10.0.0.0/8 or fd00::/8 (")
    assert reason in message and message.endswith(f"not CLOISTER_EXECUTION__ALLOWED_NETWORKS=127.0.0.0/8,{value}")
