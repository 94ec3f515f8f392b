"""What ``cloister up`` says when it starts about the networks task URLs may reach."""

from __future__ import annotations

from pathlib import Path

from cloister.cli.main import task_url_reach
from cloister.config import load_settings


def test_the_banner_says_which_internal_networks_task_urls_reach(tmp_path: Path) -> None:
    default = load_settings(None, {}, state_dir=tmp_path)
    assert task_url_reach(default) == "global addresses only ([execution] allowed_networks)"
    development = load_settings(
        None, {"CLOISTER_EXECUTION__ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"}, state_dir=tmp_path
    )
    assert task_url_reach(development) == ("global addresses and 127.0.0.0/8, ::1/128 ([execution] allowed_networks)")
