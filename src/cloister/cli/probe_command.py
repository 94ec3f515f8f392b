"""``cloister probe SERVICE``: exit 0 only when this host's SERVICE answers SERVING on its gRPC
health endpoint, for container healthchecks and Kubernetes exec probes.

Services speak attested mutual TLS, so a TCP probe proves only that a port is open; this one
obtains an attested identity, checks the service's evidence and asks its health service, as
``cloister status`` does for every service at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cloister.config import ATTESTATION_SERVICE, SERVICES, load_settings
from cloister.errors import CloisterError


@click.command(name="probe")
@click.argument("service", type=click.Choice((ATTESTATION_SERVICE, *SERVICES)))
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default: $CLOISTER_STATE_DIR, else ~/.local/state/cloister).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML settings, as given to `cloister service`.",
)
@click.option("--instance", default=None, help="The instance name given to `cloister service`, if any.")
def probe(service: str, state_dir: Path | None, config_path: Path | None, instance: str | None) -> None:
    """Exit 0 when this host's SERVICE is healthy (SERVING over attested TLS), else 1; one line per endpoint."""
    from cloister.cli.health import check_service

    env = dict(os.environ)
    if instance:
        env["CLOISTER_INSTANCE"] = instance
    try:
        settings = load_settings(config_path, env, state_dir=state_dir)
        results = check_service(settings, service)
    except CloisterError as exc:
        print(f"{service}: {exc.message}")
        sys.exit(1)
    for endpoint, (ok, detail) in results.items():
        print(f"{endpoint}: {'up' if ok else 'down'}, {detail}")
    sys.exit(0 if all(ok for ok, _ in results.values()) else 1)


def register(group: click.Group) -> None:
    group.add_command(probe)
