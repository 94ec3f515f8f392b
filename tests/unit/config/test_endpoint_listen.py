"""An endpoint's advertised address (what peers dial, DNS names allowed) apart from where its server binds."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.config import EndpointSettings, load_settings
from cloister.errors import ConfigurationError


def test_a_server_binds_its_listen_address_and_peers_dial_the_advertised_one(tmp_path: Path) -> None:
    config = tmp_path / "cloister.toml"
    config.write_text(
        "[endpoints]\n"
        'frontend = { host = "frontend.example", port = 7777, listen = "0.0.0.0" }\n'
        'storage = { host = "storage.internal", port = 17778, listen = "10.1.2.3:27778" }\n'
        'scheduler = { host = "fd00::7", port = 17780, listen = "[::]:17780" }\n'
    )
    settings = load_settings(config, {}, state_dir=tmp_path)
    frontend, storage, scheduler = (settings.endpoint(n) for n in ("frontend", "storage", "scheduler"))
    assert (frontend.address, frontend.bind_address) == ("frontend.example:7777", "0.0.0.0:7777")
    assert (storage.address, storage.bind_address) == ("storage.internal:17778", "10.1.2.3:27778")
    assert (scheduler.bind_host, scheduler.bind_port) == ("[::]", 17780)
    management = settings.endpoint("management")
    assert management.listen is None and management.bind_address == management.address == "127.0.0.1:17777"


@pytest.mark.parametrize("host", ["bad host", "a/b", "-", "x" * 64 + ".example", "under..dot"])
def test_an_address_that_is_neither_a_name_nor_an_ip_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="must be a DNS name or an IP address"):
        EndpointSettings(host=host, port=1)


def test_a_bad_listen_address_is_refused_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "cloister.toml"
    config.write_text('[endpoints]\nfrontend = { host = "frontend.example", port = 7777, listen = "0.0.0.0:x" }\n')
    with pytest.raises(ConfigurationError, match=r"\[endpoints\] frontend.listen must look like HOST or HOST:PORT"):
        load_settings(config, {}, state_dir=tmp_path)
