"""Where the shared test data is: ``../shared`` beside the checkout (as in CI), or ``$CLOISTER_SHARED_DIR``."""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CLOISTER_SHARED_DIR") or REPOSITORY.parent / "shared")
TEACLAVE_FIXTURES = SHARED / "fixtures" / "teaclave"
