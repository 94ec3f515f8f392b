"""The shipped systemd units start every service, restart it on failure and sandbox it."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from cloister.config import ATTESTATION_SERVICE, SERVICES

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def _unit_of(service: str) -> tuple[configparser.RawConfigParser, str]:
    if service == "execution":
        return _unit("cloister-execution.service"), "execution"
    return _unit("cloister@.service"), "%i"


def test_the_target_wants_every_service() -> None:
    wanted = set(_unit("cloister.target")["Unit"]["Wants"].split())
    expected = {f"cloister@{name}.service" for name in (*SERVICES, ATTESTATION_SERVICE) if name != "execution"}
    assert wanted == expected | {"cloister-execution.service"}


@pytest.mark.parametrize("service", [*SERVICES, ATTESTATION_SERVICE])
def test_each_service_runs_as_itself_and_restarts_on_failure(service: str) -> None:
    unit, name = _unit_of(service)
    command = unit["Service"]["ExecStart"].split()
    assert command[1:3] == ["service", name]
    assert "--state-dir" in command and "--config" in command
    assert unit["Service"]["Restart"] == "on-failure"
    assert int(unit["Unit"]["StartLimitBurst"]) >= 5


def test_services_but_execution_run_unprivileged_and_confined() -> None:
    service = _unit("cloister@.service")["Service"]
    assert service["User"] == "cloister"
    assert service["CapabilityBoundingSet"] == ""
    for directive in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictNamespaces"):
        assert service[directive] == "yes", directive
    assert service["ProtectSystem"] == "strict"
