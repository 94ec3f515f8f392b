"""Test modules are imported by their file name alone (no packages under tests/), so two with the
same name in different folders stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_name_of_its_own() -> None:
    names = Counter(path.name for path in TESTS.rglob("*.py") if path.name != "__init__.py")
    names.pop("conftest.py", None)
    assert [name for name, count in names.items() if count > 1] == []
