"""``cloister probe SERVICE`` against a real platform: exit 0 only when that service answers SERVING
over attested TLS (or, for execution, its process is alive and ready), as a container healthcheck
or a Kubernetes exec probe runs it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from cloister_cli import clean_environment, cloister

from cloister.cli.health import PROBED
from cloister.testing import RunningPlatform, start_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("probe"))
    try:
        yield running
    finally:
        running.stop()


def _probe(platform: RunningPlatform, service: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = platform.state_dir.parent / "cloister.toml"
    return cloister(
        "probe", service, "--state-dir", platform.state_dir, "--config", config, env=clean_environment(**env)
    )


def test_every_running_service_is_up(platform: RunningPlatform) -> None:
    for service in PROBED:
        result = _probe(platform, service)
        assert result.returncode == 0, (service, result.stdout, result.stderr)
        assert ": up, " in result.stdout
    both = _probe(platform, "authentication").stdout.splitlines()
    assert [line.split(":")[0] for line in both] == ["authentication_api", "authentication_internal"]
    assert "(serving, attested)" in _probe(platform, "storage").stdout


def test_a_listener_that_is_another_service_is_down(platform: RunningPlatform) -> None:
    # management's address pointing at the frontend: the port answers, but not as management.
    result = _probe(platform, "management", CLOISTER_ENDPOINTS__MANAGEMENT=platform.frontend_address)
    assert result.returncode == 1
    assert result.stdout.startswith("management: down, ")


def test_unknown_service_is_a_usage_error(platform: RunningPlatform) -> None:
    result = _probe(platform, "database")
    assert result.returncode == 2
    assert "'database' is not one of 'attestation'" in result.stderr


def test_stopped_services_are_down(platform: RunningPlatform) -> None:
    platform.platform.kill_service("storage")  # as a crash: its address is still published
    result = _probe(platform, "storage")
    assert result.returncode == 1
    assert result.stdout.startswith("storage: down, ")
    platform.platform.stop_service("execution")
    result = _probe(platform, "execution")
    assert result.returncode == 1
    assert result.stdout.startswith("execution: down, not ready")
    assert _probe(platform, "frontend").returncode == 0  # the others are unaffected
