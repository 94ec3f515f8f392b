"""The documentation site builds with ``mkdocs build --strict`` (what ``make docs`` runs), and its
API reference covers every public name of ``cloister``, so neither the pages nor the reference rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cloister

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strict_and_documents_every_public_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    documented = set(re.findall(r'id="cloister\.[\w.]*?\.(\w+)"', (site / "api" / "index.html").read_text()))
    assert set(cloister.__all__) <= documented, f"not in docs/api.md: {sorted(set(cloister.__all__) - documented)}"
