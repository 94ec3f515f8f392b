"""``cloister deploy init | bundle | unpack``: a deployment across hosts, created once and joined by bundles."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cloister.attestation.enclave_info import HARDWARE_PLATFORMS
from cloister.config import SERVICES, TEE_BACKENDS
from cloister.errors import CloisterError

if TYPE_CHECKING:
    from cloister.cli.deployment_plan import DeploymentPlan


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
@click.option(
    "--tee",
    type=click.Choice(TEE_BACKENDS),
    default=None,
    help="The TEE every host runs on (the plan's tee_backend; default: the hosts file's, else sim).",
)
@click.option(
    "--measurements",
    "measurements_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TOML file of every service's raw hardware measurements (docs/deployment.md), for enclave_info.toml.",
)
@click.option("--force", is_flag=True, help="Replace the deployment already in DIRECTORY.")
def init_command(
    directory: Path,
    hosts_file: Path | None,
    host_options: tuple[str, ...],
    tee: str | None,
    measurements_file: Path | None,
    force: bool,
) -> None:
    """Create a deployment in DIRECTORY: attestation root CA, auditor key, signed enclave_info.toml,
    the storage key and every host's settings. DIRECTORY keeps every secret: keep it off the hosts."""
    from cloister.cli.bundles import init_deployment
    from cloister.cli.deployment_plan import DeploymentPlan, read_plan
    from cloister.cli.measurements import read_measurements

    if (hosts_file is None) == (not host_options):
        raise click.UsageError("give either --hosts FILE or one --host option per host")
    try:
        plan = read_plan(hosts_file) if hosts_file is not None else DeploymentPlan.from_options(host_options)
        plan = _with_tee(plan, tee, hosts_file)
        if measurements_file is not None and plan.tee_backend == "sim":
            raise click.UsageError("--measurements are a TEE's: give --tee sgx|tdx|sev-snp|nitro")
        images = read_measurements(measurements_file, plan.tee_backend) if measurements_file is not None else None
        init_deployment(directory, plan, force, images)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(_describe(exc)) from None
    click.echo(f"created a deployment of {len(plan.hosts)} hosts in {directory}")
    for host in plan.hosts.values():
        click.echo(f"  {host.name:<16} {host.address:<24} {', '.join(host.services)}")
    if images is not None:
        click.echo(f"enclave_info.toml lists every service's {plan.tee_backend} measurements")
    elif plan.tee_backend != "sim":
        click.echo(
            f"note: enclave_info.toml lists sim measurements, which never match a {plan.tee_backend} peer; "
            f"record the hardware's with: cloister deploy measure {directory} --measurements FILE"
        )
    click.echo(f"next, for each host: cloister deploy bundle {directory} --host NAME -o NAME.tar.gz")


def _with_tee(plan: DeploymentPlan, tee: str | None, hosts_file: Path | None) -> DeploymentPlan:
    """``plan`` on ``tee``, which may not contradict a tee_backend the hosts file names."""
    if tee is None or tee == plan.tee_backend:
        return plan
    if hosts_file is not None and "tee_backend" in tomllib.loads(hosts_file.read_text(encoding="utf-8")):
        raise click.UsageError(f"--tee {tee}, but {hosts_file} says tee_backend = {plan.tee_backend!r}")
    return dataclasses.replace(plan, tee_backend=tee)


@deploy.command(name="measure")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--measurements",
    "measurements_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TOML file of raw hardware measurements, [[image]] tables naming their services.",
)
@click.option(
    "--from-evidence",
    "evidence_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Take the measurements from this evidence (binary, hex or base64), verified first.",
)
@click.option("--kind", type=click.Choice(HARDWARE_PLATFORMS), default=None, help="What --from-evidence is.")
@click.option("--services", default=None, help="Comma-separated services the evidence's image runs, or 'all'.")
@click.option(
    "--collateral",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Intel's PCS collateral for an SGX or TDX quote.",
)
@click.option(
    "--certs",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Directory holding the VCEK (and ASK) for an SEV-SNP report.",
)
@click.option("--at", "at_text", default=None, metavar="RFC3339", help="Verify the evidence at this time (or now).")
def measure_command(
    directory: Path,
    measurements_file: Path | None,
    evidence_file: Path | None,
    kind: str | None,
    services: str | None,
    collateral: Path | None,
    certs: Path | None,
    at_text: str | None,
) -> None:
    """Record services' hardware measurements in DIRECTORY's enclave_info.toml and sign it again.

    The values are mapped exactly as the attestation service maps evidence; services not named
    keep their entries. Give every host a new bundle afterwards (unpack it with --force).
    """
    from cloister.cli.attest_evidence import check_evidence, parse_time
    from cloister.cli.bundles import load_plan, measure_identities
    from cloister.cli.measurements import identities_of, read_measurements

    if (measurements_file is None) == (evidence_file is None):
        raise click.UsageError("give either --measurements FILE or --from-evidence FILE")
    if evidence_file is not None and (kind is None or services is None):
        raise click.UsageError("--from-evidence needs --kind and --services")
    if measurements_file is not None and (kind or services or collateral or certs or at_text):
        raise click.UsageError("--kind, --services, --collateral, --certs and --at go with --from-evidence")
    try:
        chosen = _services(services) if services is not None else ()
        at = parse_time(at_text) if at_text else dt.datetime.now(dt.UTC)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        if measurements_file is not None:
            images = read_measurements(measurements_file, load_plan(directory).tee_backend)
            identities = [identity for image in images for identity in image.identities()]
        else:
            assert evidence_file is not None and kind is not None
            check = check_evidence(kind, evidence_file, at=at, collateral_path=collateral, certs_dir=certs)
            click.echo(f"verified {kind} evidence {evidence_file} at {at.isoformat().replace('+00:00', 'Z')}")
            if check.claims.debug:
                click.echo("note: the evidence is from a TEE in debug mode, which a strict TEE policy refuses")
            identities = identities_of(check.claims, chosen)
        info = measure_identities(directory, identities)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    except ValueError as exc:  # evidence the verifiers could not even parse
        raise click.ClickException(f"{evidence_file}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(_describe(exc)) from None
    for identity in identities:
        click.echo(f"  {identity.name:<34} {identity.platform:<8} mr_enclave {identity.mr_enclave.hex()}")
        click.echo(f"  {'':<34} {'':<8} mr_signer  {identity.mr_signer.hex()}")
    click.echo(f"signed {directory / 'attestation' / 'enclave_info.toml'} ({len(info.identities())} identities)")
    click.echo(f"next, for each host: cloister deploy bundle {directory} --host NAME -o NAME.tar.gz")


def _services(text: str) -> tuple[str, ...]:
    if text.strip() == "all":
        return SERVICES
    chosen = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in SERVICES]
    if unknown or not chosen:
        named = ", ".join(unknown) or "none"
        raise ValueError(f"--services: {named} is not a service; services: {', '.join(SERVICES)}, or all")
    return chosen


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
