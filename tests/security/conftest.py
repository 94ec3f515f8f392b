"""The security suite's import path: tests/support and tests/e2e, as pytest's ``pythonpath`` gives e2e.

pyproject's ``[tool.pytest.ini_options] pythonpath`` names only ``tests/support``; the e2e tests also
import from their own directory (pytest's rootdir-prepend import). This suite runs on its own
(``pytest tests/security``), so it adds both, and its own directory for ``hostile_kit``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (_HERE.parent / "e2e", _HERE.parent / "support", _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """Keeps a test's verdict and evidence in its report's user properties (also under junit xunit2)."""

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))

    return record
