"""``cloister encrypt | decrypt | cmac``: Teaclave's file formats on the command line, like ``teaclave_cli`` (§16.1).

Keys and plaintext never appear in output or error messages; a progress bar is drawn only on a terminal.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from cloister.crypto.files import PROTECTED_SCHEMA, decrypt_file, encrypt_file, read_cmac
from cloister.errors import CloisterError, FileNameMismatchError
from cloister.model.files import FileCrypto

SCHEMAS = ("aes-gcm-128", "aes-gcm-256", PROTECTED_SCHEMA)
PROGRESS_THRESHOLD = 16 << 20

_schema_option = click.option(
    "--schema",
    "-a",
    "--algorithm",
    "schema",
    type=click.Choice(SCHEMAS),
    required=True,
    help="File format (Teaclave's crypto schema).",
)
_key_option = click.option("--key", "-k", "key_hex", required=True, help="Key in hex (16 or 32 bytes).")
_iv_option = click.option("--iv", "iv_hex", default=None, help="IV in hex (12 bytes; aes-gcm schemas only).")
_input_option = click.option(
    "--input-file",
    "-i",
    "--input",
    "source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="File to read.",
)
_output_option = click.option(
    "--output-file",
    "-o",
    "--output",
    "destination",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write (replaced only on success).",
)
_print_cmac_option = click.option("--print-cmac", "-c", is_flag=True, help="Print the cmac as 32 hex digits.")


def _hex(value: str, option: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter("not a hexadecimal string", param_hint=option) from None


def _crypto(schema: str, key_hex: str, iv_hex: str | None) -> FileCrypto:
    """Parse and validate the key and IV with the registration rules of §7.2."""
    if schema == PROTECTED_SCHEMA and iv_hex is not None:
        raise click.UsageError("--iv is not used by teaclave-file-128 (its nodes have their own keys)")
    if schema != PROTECTED_SCHEMA and iv_hex is None:
        raise click.UsageError("--iv is required for aes-gcm schemas")
    key = _hex(key_hex, "--key")
    iv = _hex(iv_hex, "--iv") if iv_hex is not None else b""
    try:
        return FileCrypto.from_request(schema, key, iv, field="")
    except CloisterError as exc:
        raise click.BadParameter(exc.message, param_hint="--key/--iv") from None


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress callback drawing a bar on stderr for large files on a terminal; ``None`` otherwise."""
    if total <= PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _fail(exc: CloisterError | OSError | ValueError) -> click.ClickException:
    if isinstance(exc, FileNameMismatchError):
        message = exc.message + "; a teaclave-file-128 file must keep its original name (rename it back or pass --name)"
    elif isinstance(exc, CloisterError):
        message = exc.message
    elif isinstance(exc, OSError):
        message = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    else:
        message = str(exc)
    return click.ClickException(message)


def _transform(
    label: str, source: Path, run: Callable[[Callable[[int], None] | None], bytes], print_cmac: bool
) -> None:
    """Run an encryption or decryption of ``source`` with a progress bar, then print its cmac if asked."""
    try:
        with _progress(label, source.stat().st_size) as progress:
            cmac = run(progress)
    except (CloisterError, OSError, ValueError) as exc:
        raise _fail(exc) from None
    if print_cmac:
        click.echo(cmac.hex())


@click.command(name="encrypt")
@_schema_option
@_key_option
@_iv_option
@_input_option
@_output_option
@click.option("--name", default=None, help="teaclave-file-128: internal file name (default: the output's name).")
@_print_cmac_option
def encrypt_command(
    schema: str,
    key_hex: str,
    iv_hex: str | None,
    source: Path,
    destination: Path,
    name: str | None,
    print_cmac: bool,
) -> None:
    """Encrypt a plaintext file into a Teaclave file format."""
    crypto = _crypto(schema, key_hex, iv_hex)
    _transform(
        "encrypting",
        source,
        lambda progress: encrypt_file(crypto, source, destination, name=name, progress=progress),
        print_cmac,
    )


@click.command(name="decrypt")
@_schema_option
@_key_option
@_iv_option
@_input_option
@_output_option
@click.option("--name", default=None, help="teaclave-file-128: the name it was created with (default: the input's).")
@click.option("--expected-cmac", "cmac_hex", default=None, help="Registered cmac in hex, checked before decrypting.")
@_print_cmac_option
def decrypt_command(
    schema: str,
    key_hex: str,
    iv_hex: str | None,
    source: Path,
    destination: Path,
    name: str | None,
    cmac_hex: str | None,
    print_cmac: bool,
) -> None:
    """Verify and decrypt a file; nothing is written unless every integrity check passes."""
    crypto = _crypto(schema, key_hex, iv_hex)
    expected = _hex(cmac_hex, "--expected-cmac") if cmac_hex is not None else None
    _transform(
        "decrypting",
        source,
        lambda progress: decrypt_file(
            crypto, source, destination, name=name, expected_cmac=expected, progress=progress
        ),
        print_cmac,
    )


@click.command(name="cmac")
@_schema_option
@_input_option
def cmac_command(schema: str, source: Path) -> None:
    """Print the cmac stored in an encrypted file (no key needed)."""
    try:
        cmac = read_cmac(FileCrypto(schema), source)
    except (CloisterError, OSError) as exc:
        raise _fail(exc) from None
    click.echo(cmac.hex())


def register(group: click.Group) -> None:
    """Add the file crypto commands to the ``cloister`` group."""
    for command in (encrypt_command, decrypt_command, cmac_command):
        group.add_command(command)
