"""What ``cloister up`` refuses before starting anything: taken ports (named with their setting)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister.config import ENDPOINTS, Settings, load_settings
from cloister.preflight import PreflightError, check_ports


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port someone else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


def _settings(tmp_path: Path, **endpoints: str) -> Settings:
    env = {f"CLOISTER_ENDPOINTS__{name.upper()}": "127.0.0.1:0" for name in ENDPOINTS}
    env.update({f"CLOISTER_ENDPOINTS__{name.upper()}": address for name, address in endpoints.items()})
    return load_settings(None, env, state_dir=tmp_path)


def test_a_taken_port_is_named_with_its_setting(tmp_path: Path, taken: int) -> None:
    settings = _settings(tmp_path, frontend=f"127.0.0.1:{taken}")
    with pytest.raises(PreflightError) as refused:
        check_ports(settings, ENDPOINTS)
    assert refused.value.message == (
        f"port {taken} (frontend) is already in use on 127.0.0.1: stop what holds it, "
        "or change [endpoints] frontend (CLOISTER_ENDPOINTS__FRONTEND)"
    )


def test_only_the_endpoints_asked_about_are_checked(tmp_path: Path, taken: int) -> None:
    settings = _settings(tmp_path, frontend=f"127.0.0.1:{taken}")
    check_ports(settings, [name for name in ENDPOINTS if name != "frontend"])


def test_two_endpoints_on_one_port(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    settings = _settings(tmp_path, storage=f"127.0.0.1:{free}", scheduler=f"127.0.0.1:{free}")
    with pytest.raises(PreflightError, match=f"port {free} is configured for both storage and scheduler"):
        check_ports(settings, ENDPOINTS)


def test_free_ports_are_let_go_for_the_services(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_ports(_settings(tmp_path, frontend=f"127.0.0.1:{free}"), ENDPOINTS)
    with socket.socket() as service:  # what the frontend will do next
        service.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        service.bind(("127.0.0.1", free))
        service.listen(1)


def test_an_address_not_on_this_host(tmp_path: Path) -> None:
    settings = _settings(tmp_path, frontend="192.0.2.1:7777")  # TEST-NET-1: never a local address
    with pytest.raises(PreflightError, match=r"cannot listen on 192\.0\.2\.1:7777 \(frontend\): .*CLOISTER_ENDPOINTS"):
        check_ports(settings, ENDPOINTS)
