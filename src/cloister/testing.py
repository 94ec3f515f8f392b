"""Start a real platform for tests, benchmarks and users' own test suites.

``start_platform(tmp_path)`` runs the seven services as real processes on free loopback ports
with a fresh state directory, like temporal's ``WorkflowEnvironment.start_local()``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cloister.config import ENDPOINTS, load_settings
from cloister.launcher import Platform
from cloister.rpc.runtime import deployment_of

_CONFIG_TEMPLATE = """\
[endpoints]
{endpoints}

[scheduler]
executor_timeout_seconds = {executor_timeout}

[execution]
heartbeat_seconds = {heartbeat}
"""


@dataclass
class RunningPlatform:
    platform: Platform
    state_dir: Path
    admin_user: str
    admin_password: str

    @property
    def authentication_address(self) -> str:
        return self.platform.endpoint("authentication_api")

    @property
    def frontend_address(self) -> str:
        return self.platform.endpoint("frontend")

    @property
    def as_root_ca(self) -> Path:
        return deployment_of(self.platform.settings).as_root_ca_path

    @property
    def enclave_info(self) -> Path:
        return deployment_of(self.platform.settings).enclave_info_path

    def connection_args(self, service: str) -> tuple[str, str, str]:
        address = self.authentication_address if service == "authentication" else self.frontend_address
        return address, str(self.as_root_ca), str(self.enclave_info)

    def stop(self) -> None:
        self.platform.stop()

    def __enter__(self) -> RunningPlatform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def restart(self) -> None:
        """Stop every service and start them all again on the same state directory."""
        self.platform.stop()
        self.platform.start()
        self.platform.supervise_in_background()


def start_platform(
    directory: Path,
    *,
    executor_timeout: float = 3.0,
    heartbeat: float = 0.5,
    env: Mapping[str, str] | None = None,
) -> RunningPlatform:
    """Start all services with state in ``directory / "state"``; stop it with ``.stop()``."""
    state_dir = directory / "state"
    config = directory / "cloister.toml"
    config.write_text(
        _CONFIG_TEMPLATE.format(
            endpoints="\n".join(f'{name} = "127.0.0.1:0"' for name in ENDPOINTS),
            executor_timeout=executor_timeout,
            heartbeat=heartbeat,
        )
    )
    password = secrets.token_urlsafe(16)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    environment.update(env or {})
    environment["CLOISTER_ADMIN_PASSWORD"] = password
    settings = load_settings(config, environment, state_dir=state_dir)
    platform = Platform(settings, config, environment)
    platform.start()
    platform.supervise_in_background()  # a service that dies is started again, as under `cloister up`
    return RunningPlatform(platform, state_dir, settings.admin.user, password)
