"""The ``cloister`` command where no platform is needed, run as a user runs it: status before the
first start, key files for encrypt and decrypt, and shell completion."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from cloister_cli import clean_environment, cloister


def test_status_before_the_first_start_says_so_in_one_line(tmp_path: Path) -> None:
    never = tmp_path / "never-started"
    for args, env in (
        (["status", "--state-dir", never], clean_environment()),
        (["status"], clean_environment(CLOISTER_STATE_DIR=str(never))),
    ):
        result = cloister(*args, env=env)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"Error: no Cloister has been started with state directory {never}: start one with "
            "`cloister up` (or `make run`), or give the --state-dir or --config it was started with\n"
        )


def test_keygen_prints_a_key_or_writes_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    printed = cloister("keygen")
    assert printed.returncode == 0 and re.fullmatch(r"[0-9a-f]{32}\n", printed.stdout)
    assert re.fullmatch(r"[0-9a-f]{64}\n", cloister("keygen", "--bytes", "32").stdout)
    assert cloister("keygen").stdout != printed.stdout

    key_file = tmp_path / "alice.key"
    old_umask = os.umask(0)  # a careless umask must not make a key readable by others
    try:
        written = cloister("keygen", "-o", key_file)
    finally:
        os.umask(old_umask)
    assert written.returncode == 0 and written.stdout == ""
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{32}\n", key)
    assert key.strip() not in written.stderr

    again = cloister("keygen", "-o", key_file)
    assert again.returncode == 1 and "already exists; keygen never replaces a key" in again.stderr
    assert key_file.read_text() == key


def test_encrypt_and_decrypt_with_a_key_file(tmp_path: Path) -> None:
    plain = tmp_path / "customers.txt"
    plain.write_bytes(os.urandom(50_000))
    key_file = tmp_path / "bank.key"
    assert cloister("keygen", "-o", key_file).returncode == 0
    key = key_file.read_text().strip()
    sealed, opened = tmp_path / "customers.enc", tmp_path / "opened.txt"

    encrypted = cloister(
        "encrypt", "--schema", "teaclave-file-128", "--key-file", key_file, "-i", plain, "-o", sealed, "--print-cmac"
    )
    assert encrypted.returncode == 0 and encrypted.stderr == ""
    assert re.fullmatch(r"[0-9a-f]{32}\n", encrypted.stdout)
    assert plain.read_bytes() not in sealed.read_bytes()
    decrypted = cloister(
        "decrypt", "--schema", "teaclave-file-128", "--key-file", key_file, "-i", sealed, "-o", opened, "-c"
    )
    assert decrypted.returncode == 0 and decrypted.stdout == encrypted.stdout and decrypted.stderr == ""
    assert opened.read_bytes() == plain.read_bytes()

    other = tmp_path / "other.key"
    assert cloister("keygen", "-o", other).returncode == 0
    opened.unlink()
    refused = cloister("decrypt", "--schema", "teaclave-file-128", "-K", other, "-i", sealed, "-o", opened)
    assert refused.returncode == 1 and not opened.exists()
    for output in (encrypted, decrypted, refused):
        assert key not in output.stdout + output.stderr


def test_a_key_on_the_command_line_still_works_but_warns(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("hello")
    key = "000102030405060708090a0b0c0d0e0f"
    typed = cloister("encrypt", "--schema", "teaclave-file-128", "--key", key, "-i", plain, "-o", tmp_path / "x.enc")
    assert typed.returncode == 0
    assert typed.stderr.startswith("warning: a key given with --key is visible to other users in the process list")
    assert "use --key-file FILE" in typed.stderr and key not in typed.stderr


def test_shell_completion_as_documented() -> None:
    script = cloister(env=clean_environment(_CLOISTER_COMPLETE="bash_source"))
    assert script.returncode == 0 and "complete -o nosort -F _cloister_completion cloister" in script.stdout
    for typed, offered in (("cloister ke", "plain,keygen"), ("cloister attest --an", "plain,--any-service")):
        words = typed.split()
        env = clean_environment(_CLOISTER_COMPLETE="bash_complete", COMP_WORDS=typed, COMP_CWORD=str(len(words) - 1))
        assert cloister(env=env).stdout.splitlines() == [offered]
