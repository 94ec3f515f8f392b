"""A bad settings file or variable stops ``cloister up`` with one line, before any service starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    return subprocess.run(
        [sys.executable, "-m", "cloister", *args],
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            '[execution]\nslots = -1\n[logging]\nlevel = "LOUD"\n',
            {},
            "[execution] slots must be at least 1, not -1; "
            '[logging] level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not "LOUD"',
        ),
        ("[sandbox]\nmemory_bytes = true\n", {}, "[sandbox] memory_bytes must be a number, not true"),
        (
            "[storage]\nbackend = 'postgres'\n",
            {},
            '[storage]: backend = "postgres" needs [storage] dsn (CLOISTER_STORAGE__DSN), '
            "such as postgresql://cloister@db.example:5432/cloister",
        ),
        ('tee_backend = "tpm"\n', {}, 'tee_backend must be one of sim, sgx, tdx, sev-snp, nitro, not "tpm"'),
        (
            "",
            {"CLOISTER_RPC__PEER_TIMEOUT_SECONDS": "-1"},
            "[rpc] peer_timeout_seconds must be more than 0, not CLOISTER_RPC__PEER_TIMEOUT_SECONDS=-1",
        ),
    ],
)
def test_up_refuses_bad_settings_in_one_line_before_starting(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    state = tmp_path / "state"
    result = _run("up", "--config", str(config), "--state-dir", str(state), env=env)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [f"Error: {message}"]  # no traceback, no "Starting Cloister"
    assert result.stdout == ""
    assert not state.exists()  # no service ran: nothing was written


def test_every_command_that_reads_settings_refuses_them_alike(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[executon]\nslots = 2\n")
    for command in (["status"], ["service", "execution"]):
        result = _run(*command, "--config", str(config), "--state-dir", str(tmp_path / "state"))
        assert result.returncode != 0
        assert result.stderr.startswith("Error: [executon] is not a section (did you mean execution?)")
        assert len(result.stderr.splitlines()) == 1
