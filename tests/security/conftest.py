"""The security suite's import path: tests/support and tests/e2e, as pytest's ``pythonpath`` gives e2e.

pyproject's ``[tool.pytest.ini_options] pythonpath`` names only ``tests/support``; the e2e tests also
import from their own directory (pytest's rootdir-prepend import). This suite runs on its own
(``pytest tests/security``), so it adds both, and its own directory for ``hostile_kit``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (_HERE.parent / "e2e", _HERE.parent / "support", _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
