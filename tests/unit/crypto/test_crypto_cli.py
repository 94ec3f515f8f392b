"""``cloister encrypt | decrypt | cmac``: teaclave_cli's options, key files, one-line errors, no secrets in output."""

from __future__ import annotations

import io
import os
import secrets
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.cli import crypto_commands
from cloister.cli.main import main

KEY = "000102030405060708090a0b0c0d0e0f"
IV = "a0a1a2a3a4a5a6a7a8a9aaab"


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def _key_file(directory: Path, key: str = KEY) -> Path:
    path = directory / f"key-{secrets.token_hex(4)}.hex"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.txt"
    path.write_bytes(os.urandom(10_000))
    return path


@pytest.mark.parametrize(("schema", "iv"), [("aes-gcm-128", [IV]), ("aes-gcm-256", [IV]), ("teaclave-file-128", [])])
def test_encrypt_cmac_decrypt(schema: str, iv: list[str], plain: Path, tmp_path: Path) -> None:
    key = _key_file(tmp_path, KEY * 2 if schema == "aes-gcm-256" else KEY)
    iv_args = ["--iv", *iv] if iv else []
    sealed, opened = tmp_path / "sealed.enc", tmp_path / "opened.txt"
    encrypted = _run(
        "encrypt", "--schema", schema, "--key-file", key, *iv_args, "-i", plain, "-o", sealed, "--print-cmac"
    )
    assert encrypted.exit_code == 0, encrypted.output
    cmac = encrypted.stdout
    assert len(cmac) == 33 and cmac.endswith("\n") and cmac == cmac.lower()
    assert _run("cmac", "--schema", schema, "-i", sealed).stdout == cmac
    decrypted = _run("decrypt", "--schema", schema, "-K", key, *iv_args, "-i", sealed, "-o", opened, "-c")
    assert decrypted.exit_code == 0 and decrypted.stdout == cmac
    assert opened.read_bytes() == plain.read_bytes()
    quiet = _run("decrypt", "--schema", schema, "--key-file", key, *iv_args, "-i", sealed, "-o", opened)
    assert quiet.exit_code == 0 and quiet.output == ""


def test_a_key_on_the_command_line_works_with_a_warning(plain: Path, tmp_path: Path) -> None:
    sealed, opened = tmp_path / "sealed.enc", tmp_path / "opened.txt"
    typed = _run("encrypt", "--schema", "teaclave-file-128", "--key", KEY, "-i", plain, "-o", sealed)
    assert typed.exit_code == 0 and typed.stdout == ""
    assert "warning: a key given with --key is visible to other users" in typed.stderr and KEY not in typed.stderr
    from_file = _run("decrypt", "--schema", "teaclave-file-128", "-K", _key_file(tmp_path), "-i", sealed, "-o", opened)
    assert from_file.exit_code == 0 and from_file.output == ""
    assert opened.read_bytes() == plain.read_bytes()


def test_the_key_is_given_exactly_once(plain: Path, tmp_path: Path) -> None:
    args = ["encrypt", "--schema", "teaclave-file-128", "-i", plain, "-o", tmp_path / "x"]
    neither = _run(*args)
    assert neither.exit_code == 2 and "give the key with --key-file FILE" in neither.output
    both = _run(*args, "--key", KEY, "--key-file", _key_file(tmp_path))
    assert both.exit_code == 2 and "give the key once" in both.output
    assert not (tmp_path / "x").exists()


def test_a_key_file_others_can_read_warns_and_a_bad_one_is_refused(plain: Path, tmp_path: Path) -> None:
    key = _key_file(tmp_path)
    key.chmod(0o644)
    shared = _run("encrypt", "--schema", "teaclave-file-128", "-K", key, "-i", plain, "-o", tmp_path / "x")
    assert shared.exit_code == 0 and f"{key} can be read by other users; chmod 600 it" in shared.stderr
    bad = tmp_path / "bad.hex"
    bad.write_text("not a key " + KEY)
    refused = _run("encrypt", "--schema", "teaclave-file-128", "-K", bad, "-i", plain, "-o", tmp_path / "y")
    assert refused.exit_code == 2 and "does not hold a key in hex" in refused.output
    assert KEY not in refused.output and not (tmp_path / "y").exists()
    missing = _run("encrypt", "--schema", "teaclave-file-128", "-K", tmp_path / "absent", "-i", plain, "-o", bad)
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_teaclave_cli_spelling_and_a_fixture(tmp_path: Path) -> None:
    fixture = TEACLAVE_FIXTURES / "functions/ordered_set_intersect/psi0.txt.enc"
    out = tmp_path / "psi0.txt"
    result = _run(
        "decrypt", "-a", "teaclave-file-128", "-k", "00" * 16, "--input-file", fixture, "--output-file", out, "-c"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "92f686d4ac2ba6b4ffd93bc7ac5dbf58\n"
    assert out.read_bytes() == fixture.with_suffix("").read_bytes()


def test_iv_rules(plain: Path, tmp_path: Path) -> None:
    result = _run("encrypt", "--schema", "aes-gcm-128", "--key", KEY, "-i", plain, "-o", tmp_path / "x")
    assert result.exit_code == 2 and "--iv is required for aes-gcm schemas" in result.output
    result = _run(
        "encrypt", "--schema", "teaclave-file-128", "--key", KEY, "--iv", IV, "-i", plain, "-o", tmp_path / "x"
    )
    assert result.exit_code == 2 and "--iv is not used by teaclave-file-128" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("schema", "key", "iv", "message"),
    [
        ("aes-gcm-128", KEY[:-2], IV, "key must be 16 bytes for aes-gcm-128, got 15"),
        ("aes-gcm-256", KEY, IV, "key must be 32 bytes for aes-gcm-256, got 16"),
        ("aes-gcm-128", KEY, IV + "00", "iv must be 12 bytes for aes-gcm-128, got 13"),
        ("teaclave-file-128", KEY * 2, None, "key must be 16 bytes for teaclave-file-128, got 32"),
        ("aes-gcm-128", "zz" * 16, IV, "not a hexadecimal string"),
    ],
)
def test_key_and_iv_validation(
    schema: str, key: str, iv: str | None, message: str, plain: Path, tmp_path: Path
) -> None:
    iv_args = ["--iv", iv] if iv else []
    result = _run("encrypt", "--schema", schema, "--key", key, *iv_args, "-i", plain, "-o", tmp_path / "x")
    assert result.exit_code == 2 and message in result.output


def test_failures_are_one_line_and_leave_no_output(plain: Path, tmp_path: Path) -> None:
    sealed, opened = tmp_path / "sealed.bin", tmp_path / "opened.txt"
    key = _key_file(tmp_path)
    assert _run("encrypt", "--schema", "aes-gcm-128", "-K", key, "--iv", IV, "-i", plain, "-o", sealed).exit_code == 0
    wrong = "ff" * 16
    result = _run(
        "decrypt", "--schema", "aes-gcm-128", "-K", _key_file(tmp_path, wrong), "--iv", IV, "-i", sealed, "-o", opened
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "authentication tag does not verify" in result.output
    assert wrong not in result.output and not opened.exists()
    result = _run(
        "decrypt",
        "--schema",
        "aes-gcm-128",
        "-K",
        key,
        "--iv",
        IV,
        "-i",
        sealed,
        "-o",
        opened,
        "--expected-cmac",
        "00" * 16,
    )
    assert result.exit_code == 1 and "does not match the registered one" in result.output and not opened.exists()


def test_teaclave_file_must_keep_its_name(plain: Path, tmp_path: Path) -> None:
    sealed = tmp_path / "scores.enc"
    assert _run("encrypt", "--schema", "teaclave-file-128", "-k", KEY, "-i", plain, "-o", sealed).exit_code == 0
    moved = sealed.rename(tmp_path / "renamed.enc")
    result = _run("decrypt", "--schema", "teaclave-file-128", "-k", KEY, "-i", moved, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "created as 'scores.enc'" in result.output and "original name" in result.output
    named = _run(
        "decrypt",
        "--schema",
        "teaclave-file-128",
        "-k",
        KEY,
        "-i",
        moved,
        "-o",
        tmp_path / "out",
        "--name",
        "scores.enc",
    )
    assert named.exit_code == 0 and (tmp_path / "out").read_bytes() == plain.read_bytes()


def test_cmac_of_a_file_that_is_not_encrypted(plain: Path) -> None:
    result = _run("cmac", "--schema", "teaclave-file-128", "-i", plain)
    assert result.exit_code == 1 and "wrong file id" in result.output


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("cmac", "--schema", "aes-gcm-128", "-i", tmp_path / "absent")
    assert result.exit_code == 2 and "does not exist" in result.output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_large_files_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    with crypto_commands._progress("x", crypto_commands.PROGRESS_THRESHOLD + 1) as progress:
        assert progress is None  # pytest's stderr is not a terminal
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with crypto_commands._progress("x", 100) as progress:
        assert progress is None
    with crypto_commands._progress("encrypting", crypto_commands.PROGRESS_THRESHOLD + 1) as progress:
        assert progress is not None
        progress(crypto_commands.PROGRESS_THRESHOLD)
    assert "encrypting" in terminal.getvalue()


def test_large_file_without_a_terminal_prints_nothing(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(crypto_commands.PROGRESS_THRESHOLD + 4096)
    result = _run(
        "encrypt", "--schema", "teaclave-file-128", "-K", _key_file(tmp_path), "-i", big, "-o", tmp_path / "big.enc"
    )
    assert result.exit_code == 0 and result.output == ""
