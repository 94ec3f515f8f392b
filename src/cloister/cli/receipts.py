"""``cloister receipt get`` and ``verify``: fetch a task's signed receipt, and check one offline.

Verifying needs only the deployment's trust files: the attestation root CA and the signed
``enclave_info.toml`` (from a state directory, whose auditor signatures are then checked too,
or given as files). A receipt carries the hash of the task's approved manifest; ``get
--manifest FILE`` saves the manifest itself, and ``verify --manifest FILE`` checks it against
that hash and prints its terms. Exit 0 when the receipt holds, 1 with the reason otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import click

from cloister.errors import CloisterError

_STATE_HELP = "State directory whose trust files to use (default: $CLOISTER_STATE_DIR, else ~/.local/state/cloister)."


@click.group(name="receipt")
def receipt_group() -> None:
    """Task receipts: what an attested execution service ran, signed by its attested key."""


@receipt_group.command(name="verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=_STATE_HELP)
@click.option(
    "--as-root-ca", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Attestation root CA."
)
@click.option(
    "--enclave-info", type=click.Path(dir_okay=False, path_type=Path), default=None, help="The identity file."
)
@click.option(
    "--manifest",
    "manifest_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The task's manifest (as `receipt get --manifest` saved it): check it against the receipt's hash.",
)
@click.option("--at", "at_text", default=None, help="Check as of this RFC 3339 time (default: the receipt's iat).")
@click.option("--max-report-age", type=float, default=None, help="Oldest acceptable report, in seconds, at that time.")
def verify_command(
    file: Path,
    state_dir: Path | None,
    as_root_ca: Path | None,
    enclave_info: Path | None,
    manifest_file: Path | None,
    at_text: str | None,
    max_report_age: float | None,
) -> None:
    """Check a receipt FILE offline; exit 0 when it verifies, 1 with the reason otherwise."""
    from cloister.attestation.deployment import Deployment
    from cloister.attestation.enclave_info import EnclaveInfo
    from cloister.attestation.receipts import read_manifest_file, read_receipt_text, verify_receipt
    from cloister.attestation.report import AttestationPolicy
    from cloister.cli.attest import load_root
    from cloister.config import load_settings

    try:
        at = None if at_text is None else dt.datetime.fromisoformat(at_text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{at_text!r} is not an RFC 3339 time", param_hint="--at") from None
    if at is not None and at.tzinfo is None:
        raise click.BadParameter("give a time zone (e.g. Z)", param_hint="--at")
    try:
        settings = load_settings(None, dict(os.environ), state_dir=state_dir)
        deployment = Deployment(settings.attestation_dir, settings.attestation)
        root = load_root(as_root_ca or deployment.as_root_ca_path)
        signers: list[str] | None = None
        if enclave_info is not None:
            info = EnclaveInfo.parse(enclave_info.read_bytes())
        else:
            info, signers = deployment.verified_enclave_info()
        quoting_key = None
        if as_root_ca is None and (deployment.directory / "sim_quoting.pub.pem").exists():
            quoting_key = deployment.sim_quoting_public_key()
        age = max_report_age or settings.attestation.max_report_age_seconds
        policy = AttestationPolicy(
            accepted_statuses=frozenset(settings.attestation.accepted_quote_statuses),
            max_report_age=dt.timedelta(seconds=age),
        )
        token = read_receipt_text(file.read_bytes())
        manifest = None if manifest_file is None else read_manifest_file(manifest_file.read_bytes())
        verified = verify_receipt(token, root, info, policy, at=at, quoting_key=quoting_key, manifest=manifest)
    except (CloisterError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, CloisterError) else str(exc)
        print(f"NOT VERIFIED: {message}")
        sys.exit(1)
    print(f"task:           {verified.task_id} ({verified.status})")
    print(f"manifest hash:  {verified.manifest_hash.hex()}")
    print(f"terms hash:     {verified.terms_hash}")
    if verified.manifest is not None:
        print(f"manifest:       {manifest_file}, checked against the manifest hash")
        print(f"function:       {verified.function_id} ({verified.manifest.function_name})")
        print(f"participants:   {', '.join(verified.manifest.participants)}")
        print(f"approved by:    {', '.join(sorted(verified.manifest.approvals))} (each these terms)")
    else:
        print("manifest:       not given; --manifest FILE checks it and shows its terms")
        print(f"function:       {verified.function_id}")
    print(f"payload:        sha256 {verified.payload_sha256}")
    print(f"arguments:      sha256 {verified.arguments_sha256}")
    for name, tag in sorted(verified.inputs.items()):
        print(f"input {name}: cmac {tag}")
    for name, tag in sorted(verified.outputs.items()):
        print(f"output {name}: cmac {tag}")
    print(f"issued at:      {verified.issued_at.isoformat()}")
    print(f"signed by:      {verified.signer} ({verified.tee_backend}, ear.status {verified.ear_status})")
    if signers is not None:
        print(f"enclave_info:   signed by {', '.join(signers)}")
    else:
        print("enclave_info:   given as a file; its auditor signatures were not checked here")
    evidence = "signature checked" if verified.evidence_signature_checked else "binding checked, signature not checked"
    print(f"task evidence:  {evidence}")
    print("VERIFIED")


@receipt_group.command(name="get")
@click.argument("task_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write it here.")
@click.option(
    "--manifest",
    "manifest_output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the task's approved manifest (canonical JSON) here.",
)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=_STATE_HELP)
@click.option("--user", "user_id", default=None, help="Log in as this user (default: the local administrator).")
@click.option("--password-env", default="CLOISTER_PASSWORD", show_default=True, help="Variable holding the password.")
def get_command(
    task_id: str,
    output: Path | None,
    manifest_output: Path | None,
    state_dir: Path | None,
    user_id: str | None,
    password_env: str,
) -> None:
    """Fetch TASK_ID's receipt from the local platform (participants only) and print or save it."""
    from cloister.sdk import Client, Credentials

    credentials = None
    if user_id is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise click.UsageError(f"set {password_env} to the password of {user_id}")
        credentials = Credentials(user_id, password)
    try:
        with Client.connect_local(state_dir, credentials=credentials) as client:
            receipt = client.tasks.get(task_id).receipt()
            token, manifest = receipt.token, receipt.manifest
    except CloisterError as exc:
        print(f"no receipt: {exc.message}", file=sys.stderr)
        sys.exit(1)
    if manifest_output is not None:
        if manifest is None:
            print("no manifest: the platform served none with the receipt", file=sys.stderr)
            sys.exit(1)
        manifest_output.write_bytes(manifest)  # exact bytes: their SHA-256 is the receipt's manifest_hash
    if output is None:
        print(token)
    else:
        output.write_text(token + "\n", encoding="ascii")


def register(group: click.Group) -> None:
    group.add_command(receipt_group)
