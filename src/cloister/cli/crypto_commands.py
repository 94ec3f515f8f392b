"""``cloister keygen | encrypt | decrypt | cmac``: Teaclave's file formats on the command line, like
``teaclave_cli`` (§16.1).

Keys come from a file (``--key-file``, which ``cloister keygen`` writes with mode 0600): a key typed
on the command line is in the process list for every user to read and in the shell's history, so
``--key`` still works but warns. Keys and plaintext never appear in output or error messages; a
progress bar is drawn only on a terminal.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
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
KEY_FILE_LIMIT = 4096
"""A key file is a line of hex; anything longer is not one."""
_key_file_option = click.option(
    "--key-file",
    "-K",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the key in hex, 16 or 32 bytes (`cloister keygen -o FILE` writes one).",
)
_key_option = click.option(
    "--key",
    "-k",
    "key_hex",
    default=None,
    help="Key in hex; other users see it in the process list, and it stays in your shell history: use --key-file.",
)
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


def _key(key_hex: str | None, key_file: Path | None) -> bytes:
    """The key from ``--key-file`` or, with a warning, from ``--key``; never echoed back."""
    if key_hex is not None and key_file is not None:
        raise click.UsageError("give the key once: --key-file FILE or --key HEX")
    if key_hex is not None:
        click.echo(
            "warning: a key given with --key is visible to other users in the process list and stays in "
            "your shell history; use --key-file FILE (cloister keygen -o FILE writes one)",
            err=True,
        )
        return _hex(key_hex, "--key")
    if key_file is None:
        raise click.UsageError("give the key with --key-file FILE (cloister keygen -o FILE writes one)")
    try:
        with open(key_file, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read(KEY_FILE_LIMIT + 1)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {key_file}: {exc.strerror or exc}", param_hint="--key-file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        click.echo(f"warning: {key_file} can be read by other users; chmod 600 it", err=True)
    try:
        if len(text) > KEY_FILE_LIMIT:
            raise ValueError
        return bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise click.BadParameter(f"{key_file} does not hold a key in hex", param_hint="--key-file") from None


def _crypto(schema: str, key: bytes, iv_hex: str | None) -> FileCrypto:
    """Validate the key and parse the IV with the registration rules (and messages) of §7.2."""
    if schema == PROTECTED_SCHEMA and iv_hex is not None:
        raise click.UsageError("--iv is not used by teaclave-file-128 (its nodes have their own keys)")
    if schema != PROTECTED_SCHEMA and iv_hex is None:
        raise click.UsageError("--iv is required for aes-gcm schemas")
    iv = _hex(iv_hex, "--iv") if iv_hex is not None else b""
    try:
        return FileCrypto.from_request(schema, key, iv, field="")
    except CloisterError as exc:
        raise click.BadParameter(exc.message, param_hint="the key or --iv") from None


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


@click.command(name="keygen")
@click.option(
    "--bytes",
    "length",
    type=click.Choice(["16", "32"]),
    default="16",
    show_default=True,
    help="Key length: 16 for aes-gcm-128 and teaclave-file-128, 32 for aes-gcm-256.",
)
@click.option(
    "--output-file",
    "-o",
    "destination",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the key here, readable by you only (0600); an existing file is never replaced.",
)
def keygen_command(length: str, destination: Path | None) -> None:
    """Make a random key and print it in hex, or write it to a file for --key-file."""
    key = secrets.token_hex(int(length))
    if destination is None:
        click.echo(key)
        return
    try:
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{destination} already exists; keygen never replaces a key") from None
    except OSError as exc:
        raise _fail(exc) from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)  # whatever the umask
        handle.write(key + "\n")
    click.echo(f"wrote a {int(length) * 8}-bit key to {destination} (mode 0600)", err=True)


@click.command(name="encrypt")
@_schema_option
@_key_file_option
@_key_option
@_iv_option
@_input_option
@_output_option
@click.option("--name", default=None, help="teaclave-file-128: internal file name (default: the output's name).")
@_print_cmac_option
def encrypt_command(
    schema: str,
    key_file: Path | None,
    key_hex: str | None,
    iv_hex: str | None,
    source: Path,
    destination: Path,
    name: str | None,
    print_cmac: bool,
) -> None:
    """Encrypt a plaintext file into a Teaclave file format."""
    crypto = _crypto(schema, _key(key_hex, key_file), iv_hex)
    _transform(
        "encrypting",
        source,
        lambda progress: encrypt_file(crypto, source, destination, name=name, progress=progress),
        print_cmac,
    )


@click.command(name="decrypt")
@_schema_option
@_key_file_option
@_key_option
@_iv_option
@_input_option
@_output_option
@click.option("--name", default=None, help="teaclave-file-128: the name it was created with (default: the input's).")
@click.option("--expected-cmac", "cmac_hex", default=None, help="Registered cmac in hex, checked before decrypting.")
@_print_cmac_option
def decrypt_command(
    schema: str,
    key_file: Path | None,
    key_hex: str | None,
    iv_hex: str | None,
    source: Path,
    destination: Path,
    name: str | None,
    cmac_hex: str | None,
    print_cmac: bool,
) -> None:
    """Verify and decrypt a file; nothing is written unless every integrity check passes."""
    crypto = _crypto(schema, _key(key_hex, key_file), iv_hex)
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
    for command in (keygen_command, encrypt_command, decrypt_command, cmac_command):
        group.add_command(command)
