"""``cloister deploy init | bundle | unpack``: a deployment across hosts, created once and joined by bundles."""

from __future__ import annotations

from pathlib import Path

import click

from cloister.errors import CloisterError


@click.group(name="deploy")
def deploy() -> None:
    """Create a deployment across hosts and the bundle each host joins with (docs/deployment.md)."""


@deploy.command(name="init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--hosts",
    "hosts_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Hosts file (TOML): each host's address and services, ports, extra settings.",
)
@click.option(
    "--host",
    "host_options",
    multiple=True,
    metavar="NAME=ADDRESS:SERVICE,...",
    help="A host and its services, instead of --hosts (repeatable; default ports).",
)
@click.option("--force", is_flag=True, help="Replace the deployment already in DIRECTORY.")
def init_command(directory: Path, hosts_file: Path | None, host_options: tuple[str, ...], force: bool) -> None:
    """Create a deployment in DIRECTORY: attestation root CA, auditor key, signed enclave_info.toml,
    the storage key and every host's settings. DIRECTORY keeps every secret: keep it off the hosts."""
    from cloister.cli.bundles import init_deployment
    from cloister.cli.deployment_plan import DeploymentPlan, read_plan

    if (hosts_file is None) == (not host_options):
        raise click.UsageError("give either --hosts FILE or one --host option per host")
    try:
        plan = read_plan(hosts_file) if hosts_file is not None else DeploymentPlan.from_options(host_options)
        init_deployment(directory, plan, force)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(_describe(exc)) from None
    click.echo(f"created a deployment of {len(plan.hosts)} hosts in {directory}")
    for host in plan.hosts.values():
        click.echo(f"  {host.name:<16} {host.address:<24} {', '.join(host.services)}")
    click.echo(f"next, for each host: cloister deploy bundle {directory} --host NAME -o NAME.tar.gz")


@deploy.command(name="bundle")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--host", "host", required=True, help="The host the bundle is for, as named in the plan.")
@click.option(
    "--services",
    default=None,
    help="Comma-separated services this host runs (default: all the plan places on it).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="NAME.tar.gz for an archive (0600), anything else for a directory (default: HOST.tar.gz).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The host's state directory, written into its settings (default: the plan's, /var/lib/cloister).",
)
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def bundle_command(
    directory: Path, host: str, services: str | None, output: Path | None, state_dir: Path | None, force: bool
) -> None:
    """Write what HOST needs: public trust material, its settings, and the private keys of its services only."""
    from cloister.cli.bundles import bundle_files, write_bundle

    chosen = None if services is None else tuple(s.strip() for s in services.split(",") if s.strip())
    output = output or Path(f"{host}.tar.gz")
    try:
        files = bundle_files(directory, host, chosen, state_dir.resolve() if state_dir else None)
        write_bundle(files, output, force)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(_describe(exc)) from None
    secrets = [str(f.path) for f in files if f.secret]
    click.echo(f"wrote {output} for host {host}: {len(files)} files")
    click.echo(f"  secrets in it: {', '.join(secrets) if secrets else 'none'}")
    click.echo("copy it to the host over a channel you trust, then: cloister deploy unpack BUNDLE")


@deploy.command(name="sign")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
def sign_command(directory: Path) -> None:
    """Measure the services as installed here and sign a new enclave_info.toml (after an upgrade).

    Keys and CAs stay; give every host a new bundle afterwards (unpack it with --force).
    """
    from cloister.cli.bundles import sign_identities

    try:
        sign_identities(directory)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(_describe(exc)) from None
    click.echo(f"signed a new {directory / 'attestation' / 'enclave_info.toml'} for the code installed here")
    click.echo(f"next, for each host: cloister deploy bundle {directory} --host NAME -o NAME.tar.gz")


@deploy.command(name="unpack")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to put it (default: the state directory the bundle's settings name).",
)
@click.option("--force", is_flag=True, help="Replace files of an earlier bundle.")
def unpack_command(bundle: Path, state_dir: Path | None, force: bool) -> None:
    """Put a bundle's files into this host's state directory (regular files only, nothing outside it)."""
    from cloister.cli.bundles import CONFIG_FILE, unpack_bundle

    try:
        target = unpack_bundle(bundle, state_dir, force)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(_describe(exc)) from None
    click.echo(f"unpacked {bundle} into {target}")
    click.echo(f"start this host's services with: cloister service NAME --config {target / CONFIG_FILE}")


def _describe(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def register(group: click.Group) -> None:
    """Add ``cloister deploy`` to the ``cloister`` group."""
    group.add_command(deploy)
