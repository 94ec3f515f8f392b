"""``cloister up | status | service | audit | policy | attest``."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from cloister import logs
from cloister.attestation.backends import SIMULATED_NOTICE
from cloister.config import ATTESTATION_SERVICE, CONSOLE, SERVICES, Settings, load_settings
from cloister.errors import CloisterError, ConfigurationError
from cloister.launcher import LaunchRecord, Platform
from cloister.serve import load_service_settings, run_service

console = Console(stderr=True, highlight=False, soft_wrap=True)
"""Progress, warnings and errors."""
output = Console(highlight=False, soft_wrap=True)
"""What a command was asked for (``cloister status``'s table), on stdout."""

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default: $CLOISTER_STATE_DIR, else ~/.local/state/cloister).",
)
config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="TOML settings."
)


def _settings(
    state_dir: Path | None, config_path: Path | None, instance: str | None = None, admin_password: str | None = None
) -> Settings:
    try:
        return load_service_settings(state_dir, config_path, instance, admin_password)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None


@click.group()
@click.version_option(package_name="cloister")
def main() -> None:
    """Cloister: confidential multi-party function-as-a-service."""


@main.command()
@state_dir_option
@config_option
def up(state_dir: Path | None, config_path: Path | None) -> None:
    """Start all seven services in the foreground; Ctrl-C stops them.

    Before starting any, it makes a test task sandbox and checks that every configured port is
    free; if either fails it says why in one line and starts nothing.
    """
    settings = _settings(state_dir, config_path)
    logs.configure("launcher", settings.logging.level)
    platform = Platform(settings, config_path.resolve() if config_path else None)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    console.print(f"Starting Cloister in [bold]{settings.state_dir}[/] ...")
    try:
        platform.start()
    except (CloisterError, OSError) as exc:
        message = exc.message if isinstance(exc, CloisterError) else str(exc)
        raise click.ClickException(message) from None
    _print_banner(platform)
    try:
        while not stopping:
            platform.supervise()  # restarts a service that exited, within a budget
            if platform.given_up:
                for name, reason in platform.given_up.items():
                    console.print(f"[red]{name} {reason}; see {platform.log_dir / name}.log[/]")
                raise click.ClickException("a service keeps failing; stopping the platform")
            time.sleep(0.2)
    finally:
        console.print("Stopping Cloister ...")
        platform.stop()
        console.print("Stopped.")


def _print_banner(platform: Platform) -> None:
    from cloister.console.certificate import certificate_paths
    from cloister.rpc import addresses
    from cloister.rpc.runtime import deployment_of

    settings = platform.settings
    deployment = deployment_of(settings)
    print(f"Cloister is running (state directory {settings.state_dir})", flush=True)
    print(f"  authentication API  {platform.endpoint('authentication_api')}")
    print(f"  frontend API        {platform.endpoint('frontend')}")
    print(f"  attestation service {platform.endpoint('attestation')}")
    print(f"  attestation root CA {deployment.as_root_ca_path}")
    print(f"  enclave info        {deployment.enclave_info_path}")
    password_file = platform.admin_password_file()
    if password_file is not None:
        print(f"  log in as '{settings.admin.user}' with the password in {password_file}")
    else:
        print(f"  log in as '{settings.admin.user}' with the password you configured (CLOISTER_ADMIN_PASSWORD)")
    console_url = addresses.published(settings, CONSOLE) if settings.console.enabled else None
    if console_url is not None:
        print(f"  web console         {console_url}")
        if not settings.console.plain_http:
            print(f"  console certificate {certificate_paths(settings)[0]}")
    print(f"  logs                {platform.log_dir}")
    print(f"  task URLs reach     {task_url_reach(settings)}")
    print(f"  {SIMULATED_NOTICE}" if settings.tee_backend == "sim" else f"  TEE backend {settings.tee_backend}")
    print("Press Ctrl-C to stop.", flush=True)


def task_url_reach(settings: Settings) -> str:
    """What tasks' http(s) URLs may reach, so that internal networks opened to them are never a surprise."""
    networks = settings.execution.allowed_networks
    if not networks:
        return "global addresses only ([execution] allowed_networks)"
    return f"global addresses and {', '.join(networks)} ([execution] allowed_networks)"


def _started_settings(state_dir: Path | None, config_path: Path | None) -> tuple[Settings, str]:
    """The settings of the platform ``cloister up`` started in the state directory, and where they came from.

    Without ``--config``, the settings file and endpoints that ``cloister up`` was given are read
    back from the state directory, so that a forgotten ``--config`` cannot point status at another
    deployment. A state directory no platform has started in is refused in one line.
    """
    from cloister.rpc.runtime import deployment_of

    env = dict(os.environ)
    source = f"settings {config_path.resolve()}" if config_path else "default settings"
    if config_path is None:
        directory = _settings(state_dir, None).state_dir
        try:
            record = LaunchRecord.read(directory)
        except CloisterError as exc:
            raise click.ClickException(exc.message) from None
        if record is not None:
            state_dir, config_path = directory, record.config_path
            env.update(record.environment())
            given = f"settings {config_path}" if config_path else "default settings"
            source = f"{given}, as cloister up was started"
    try:
        settings = load_settings(config_path, env, state_dir=state_dir)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    if not deployment_of(settings).as_root_ca_path.exists():
        raise click.ClickException(ConfigurationError.not_started(settings.state_dir).message)
    return settings, source


@main.command()
@state_dir_option
@config_option
def status(state_dir: Path | None, config_path: Path | None) -> None:
    """Health-check every service of the platform started in the state directory; exit 0 only when all answer.

    Without --config, it uses the settings file and endpoints that `cloister up` was started with.
    """
    from cloister.cli.health import check_all

    settings, source = _started_settings(state_dir, config_path)
    output.print(f"state directory {settings.state_dir} ({source})")
    results = check_all(settings)
    healthy = True
    for name, (ok, detail) in results.items():
        healthy &= ok
        mark = "[green]up[/]" if ok else "[red]down[/]"
        output.print(f"{name:<24} {mark}  {escape(detail)}")
        if "sandbox WEAKER" in detail or "sandbox UNAVAILABLE" in detail:
            console.print(
                f"[bold red]WARNING: {name} cannot isolate tasks fully; see docs/sandbox.md "
                '("Hosts that cannot give every layer")[/]'
            )
    sys.exit(0 if healthy else 1)


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command(name="verify")
@state_dir_option
@config_option
@click.option(
    "--exports",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the audit export files (default: [audit] export_dir).",
)
@click.option("--skip-exports", is_flag=True, help="Check only the stored log, from where retention last cut it.")
def audit_verify(state_dir: Path | None, config_path: Path | None, exports: Path | None, skip_exports: bool) -> None:
    """Check that no audit entry was changed, removed or reordered; exit 1 if one was."""
    from cloister.cli.audit import verify
    from cloister.model.audit import AuditChainBrokenError

    settings = _settings(state_dir, config_path)
    try:
        result = verify(settings, exports, check_exports=not skip_exports)
    except AuditChainBrokenError as exc:
        console.print(f"[red]audit log TAMPERED[/]: {exc}")
        sys.exit(1)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    cut = ""
    if result.anchor.seq:
        checked = "not checked" if result.exported is None else f"{result.exported} verified"
        cut = f" after entry {result.anchor.seq} (exported entries: {checked})"
    print(f"audit log verified: {result.stored} entries{cut}, head {result.head.digest.hex()}")


@audit.command(name="export")
@state_dir_option
@config_option
@click.option(
    "--since", type=click.IntRange(min=0), default=0, show_default=True, help="Export the entries after this one."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (created 0600) instead of standard output.",
)
@click.option(
    "--exports",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where retention's export files are, for entries it cut (default: [audit] export_dir).",
)
def audit_export(
    state_dir: Path | None, config_path: Path | None, since: int, output: Path | None, exports: Path | None
) -> None:
    """Write the audit entries numbered above --since as JSON lines, oldest first."""
    from cloister.cli.audit import export

    settings = _settings(state_dir, config_path)
    try:
        if output is None:
            result = export(settings, since, sys.stdout.buffer, exports)
            sys.stdout.buffer.flush()
        else:
            # Not through a symlink, and emptied only once it is private: audit entries name users.
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            with open(fd, "wb") as out:
                os.fchmod(fd, 0o600)
                os.ftruncate(fd, 0)
                result = export(settings, since, out, exports)
    except CloisterError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    console.print(f"exported {result.count} audit entries; next time: --since {result.last}")


@main.group()
def policy() -> None:
    """The access control policy: who may do what, in files an operator edits."""


@policy.command(name="init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite policy files already in DIRECTORY.")
def policy_init(directory: Path, force: bool) -> None:
    """Write the default policy's four files into DIRECTORY, to edit and then use."""
    import shutil

    from cloister.services.access_control.policy import PACKAGED_POLICY_DIR, POLICY_FILES

    existing = [name for name in POLICY_FILES if (directory / name).exists()]
    if existing and not force:
        raise click.ClickException(f"{directory} already holds {', '.join(existing)}; use --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    for name in POLICY_FILES:
        shutil.copyfile(PACKAGED_POLICY_DIR / name, directory / name)
    print(f"wrote {', '.join(POLICY_FILES)} to {directory}")
    print("use them with this in the settings file, then restart access_control:")
    print(f'  [access_control]\n  policy_dir = "{directory.resolve()}"')


@policy.command(name="check")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path), required=False)
@state_dir_option
@config_option
def policy_check(directory: Path | None, state_dir: Path | None, config_path: Path | None) -> None:
    """Load a policy (DIRECTORY, else the configured one) and show what it allows; exit 1 if it is broken."""
    from cloister.services.access_control.policy import AccessPolicy

    if directory is None:
        directory = _settings(state_dir, config_path).access_control.policy_dir
    try:
        loaded = AccessPolicy(directory)
    except CloisterError as exc:
        console.print(f"[red]policy BROKEN[/]: {exc.message}")
        sys.exit(1)
    print(f"policy in {loaded.source}")
    for action, count in loaded.rule_counts().items():
        note = "" if count else "  (no rule: always denied)"
        print(f"  {action:<28} {count} rule{'s' if count != 1 else ''}{note}")
    for action in loaded.unknown_actions():
        console.print(f"[yellow]rules for {action!r}, which Cloister never asks about: misspelt?[/]")


@main.command(name="attest")
@click.argument("address", required=False)
@click.option("--service", default=None, help="The service the endpoint must prove to be, e.g. frontend.")
@click.option(
    "--any-service",
    is_flag=True,
    help="Accept whichever service the endpoint is (looked up in the identity file when there is one).",
)
@click.option(
    "--certificate",
    "certificate_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Verify a saved certificate (DER or PEM) instead of connecting.",
)
@click.option(
    "--as-root-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Attestation root CA (default: the state directory's).",
)
@click.option(
    "--enclave-info",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Signed identity file (default: the state directory's).",
)
@click.option("--max-report-age", type=float, default=None, help="Oldest acceptable report, in seconds.")
@click.option("--accept-status", multiple=True, help="Acceptable quote status (repeatable; default OK).")
@click.option("--accept-report-version", type=int, multiple=True, help="Acceptable report version (default 4).")
@click.option(
    "--evidence",
    "evidence_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Verify hardware evidence in FILE (binary, hex or base64) instead of an endpoint; needs --kind.",
)
@click.option("--kind", type=click.Choice(("sgx", "tdx", "sev-snp", "nitro")), default=None, help="What --evidence is.")
@click.option(
    "--collateral",
    "collateral_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="PCS collateral (dcap-qvl JSON) for an SGX or TDX quote.",
)
@click.option(
    "--certs",
    "certs_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Directory of certificates (the VCEK and ASK for SEV-SNP), recognised by content.",
)
@click.option("--at", "at_text", default=None, help="Verify at this RFC 3339 time (default: now).")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TEE policy (TOML) the evidence must satisfy; without it only authenticity and validity are checked.",
)
@state_dir_option
@config_option
def attest_command(
    address: str | None,
    service: str | None,
    any_service: bool,
    certificate_path: Path | None,
    as_root_ca: Path | None,
    enclave_info: Path | None,
    max_report_age: float | None,
    accept_status: tuple[str, ...],
    accept_report_version: tuple[int, ...],
    evidence_path: Path | None,
    kind: str | None,
    collateral_path: Path | None,
    certs_dir: Path | None,
    at_text: str | None,
    policy_path: Path | None,
    state_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Verify what an endpoint (HOST:PORT), a saved certificate or a file of hardware evidence proves.

    Exits 1 if anything fails. Without --service, the endpoint's identity is not checked and it
    is not VERIFIED (exit 1), unless --any-service accepts whichever service it proves to be.
    With --evidence FILE --kind KIND, the evidence is verified offline at --at (default now) and
    judged by --policy when one is given.
    """
    import datetime as dt

    if evidence_path is not None:
        if address is not None or certificate_path is not None:
            raise click.UsageError("give either --evidence FILE or an endpoint / --certificate, not both")
        if kind is None:
            raise click.UsageError("--evidence needs --kind sgx|tdx|sev-snp|nitro")
        _attest_evidence(evidence_path, kind, collateral_path, certs_dir, at_text, policy_path)
        return
    if any(v is not None for v in (kind, collateral_path, certs_dir, at_text, policy_path)):
        raise click.UsageError("--kind, --collateral, --certs, --at and --policy go with --evidence FILE")
    from cloister.attestation.enclave_info import EnclaveInfo
    from cloister.attestation.report import AttestationPolicy
    from cloister.cli import attest as attestation
    from cloister.rpc.runtime import deployment_of

    if (address is None) == (certificate_path is None):
        raise click.UsageError("give either HOST:PORT or --certificate FILE")
    if service is not None and any_service:
        raise click.UsageError("give either --service NAME or --any-service")
    settings = _settings(state_dir, config_path)
    deployment = deployment_of(settings)
    now = dt.datetime.now(dt.UTC)
    policy = AttestationPolicy(
        accepted_statuses=frozenset(accept_status or settings.attestation.accepted_quote_statuses),
        max_report_age=dt.timedelta(seconds=max_report_age or settings.attestation.max_report_age_seconds),
        accepted_versions=frozenset(accept_report_version or (4,)),
    )
    try:
        root = attestation.load_root(as_root_ca or deployment.as_root_ca_path)
        info_path = enclave_info or deployment.enclave_info_path
        info = EnclaveInfo.parse(info_path.read_bytes()) if info_path.exists() else None
        auditors = None
        if info is not None and enclave_info is None:
            auditors = (deployment.auditor_signatures(), deployment.auditor_public_keys())
        der = attestation.load_certificate(certificate_path) if certificate_path else attestation.fetch(address or "")
        result = attestation.attest(
            der, root, policy, service=service, enclave_info=info, auditors=auditors, now=now, any_service=any_service
        )
    except (CloisterError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, CloisterError) else str(exc)
        console.print(f"[red]NOT VERIFIED[/]: {message}")
        sys.exit(1)
    for line in attestation.describe(result, now):
        print(line)
    if result.identity is None and not any_service:
        console.print(
            "[red]NOT VERIFIED[/]: identity not checked: the report is genuine, but any service could have sent it; "
            "give --service NAME (e.g. frontend), or --any-service to accept whichever it is"
        )
        sys.exit(1)
    print("VERIFIED" if result.identity else "VERIFIED (identity not checked: --any-service)")


def _attest_evidence(
    evidence_path: Path,
    kind: str,
    collateral_path: Path | None,
    certs_dir: Path | None,
    at_text: str | None,
    policy_path: Path | None,
) -> None:
    import datetime as dt

    from cloister.cli import attest_evidence

    try:
        at = attest_evidence.parse_time(at_text) if at_text is not None else dt.datetime.now(dt.UTC)
    except ValueError as exc:
        raise click.UsageError(f"--at: {exc}") from None
    try:
        check = attest_evidence.check_evidence(
            kind, evidence_path, at=at, collateral_path=collateral_path, certs_dir=certs_dir, policy_path=policy_path
        )
    except (CloisterError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, CloisterError) else str(exc)
        console.print(f"[red]NOT VERIFIED[/]: {message}", highlight=False, soft_wrap=True)
        sys.exit(1)
    for line in attest_evidence.describe(check, at):
        print(line)
    if check.verdict is None:
        print("VERIFIED: authentic and valid at that time (no --policy: TCB status, advisories and debug not judged)")
        return
    if not check.verdict.ok:
        for reason in check.verdict.reasons:
            console.print(f"[red]policy refuses[/]: {reason}", highlight=False, soft_wrap=True)
        console.print("[red]NOT VERIFIED[/]: the evidence is authentic, but the policy refuses it", highlight=False)
        sys.exit(1)
    print("VERIFIED: authentic, valid, and the policy accepts it")


@main.command()
@click.argument("name", type=click.Choice((ATTESTATION_SERVICE, *SERVICES)))
@state_dir_option
@config_option
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write logs here.")
@click.option("--instance", default=None, help="Name this process when one host runs several of a service.")
@click.option(
    "--admin-password-stdin",
    is_flag=True,
    help="Read the first admin's password from the first line of standard input (authentication).",
)
@click.option("--launcher-pid", type=int, default=None, hidden=True, help="Stop when this launcher process dies.")
def service(**options: Any) -> None:
    """Run one service in the foreground (for deployments across hosts)."""
    try:
        run_service(**options)  # each option is named as one of its keyword arguments
    except CloisterError as exc:  # the settings: nothing is logged yet
        raise click.ClickException(exc.message) from None


importlib.import_module("cloister.cli.crypto_commands").register(main)
importlib.import_module("cloister.cli.probe_command").register(main)
importlib.import_module("cloister.cli.deploy").register(main)
importlib.import_module("cloister.cli.receipts").register(main)
