"""A service's measurement covers exactly the code it runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from cloister.attestation.measurement import PACKAGE_ROOT, mr_enclave


def test_changing_a_service_changes_only_its_measurement(tmp_path: Path) -> None:
    root = tmp_path / "cloister"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = {s: mr_enclave(s, root) for s in ("storage", "management")}
    assert before["storage"] != before["management"]

    (root / "services" / "storage" / "servicer.py").write_text("# changed\n", encoding="utf-8")
    after = {s: mr_enclave(s, root) for s in ("storage", "management")}
    assert after["storage"] != before["storage"]
    assert after["management"] == before["management"]

    (root / "rpc" / "server.py").write_text("# shared code changed\n", encoding="utf-8")
    assert mr_enclave("management", root) != before["management"]
