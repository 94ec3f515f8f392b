"""docs/configuration.md lists every setting the model has, and only those, under their real names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cloister.config import SECTIONS, Settings

DOC = Path(__file__).parents[3] / "docs" / "configuration.md"
ROW = re.compile(r"^\| (?P<toml>[^|]+) \| (?P<env>[^|]+) \| (?P<default>[^|]+) \|")


def _documented() -> dict[str, tuple[str, str]]:
    """Setting name (``[section] key`` or ``key``) → (environment cell, default cell), from the table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match is None or match["toml"] in ("TOML", "---"):
            continue
        toml, env = match["toml"].strip(), match["env"].strip()
        if toml == "—":  # a setting only the environment sets: named by its variable
            variable = re.match(r"`CLOISTER_([A-Z_]+)`", env)
            assert variable is not None, line
            name = variable[1].lower()
        else:
            name = toml.strip("`")
        assert name not in rows, f"{name} is listed twice"
        rows[name] = (env, match["default"].strip())
    return rows


def _model() -> dict[str, Any]:
    """Setting name → its default, from :class:`Settings`."""
    settings: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        if name in SECTIONS:
            for key, inner in SECTIONS[name].model_fields.items():
                settings[f"[{name}] {key}"] = inner.default
        else:
            settings[name] = field.default
    return settings


def test_the_doc_lists_exactly_the_settings_of_the_model() -> None:
    documented, model = set(_documented()), set(_model())
    assert sorted(model - documented) == [], "settings missing from docs/configuration.md"
    assert sorted(documented - model) == [], "docs/configuration.md lists settings that do not exist"


@pytest.mark.parametrize("name", sorted(_documented()))
def test_each_setting_is_documented_with_its_variable(name: str) -> None:
    env, _ = _documented()[name]
    section, _, key = name.strip("[").partition("] ")
    variable = f"CLOISTER_{section.upper()}__{key.upper()}" if key else f"CLOISTER_{section.upper()}"
    assert f"`{variable}`" in env


@pytest.mark.parametrize("name", sorted(_documented()))
def test_a_default_the_doc_spells_out_is_the_models(name: str) -> None:
    """Defaults written as one literal (`86400`, `INFO`, `builtin,python,wasm`) must be the model's;
    those in words (number of cores, 2 GiB) are for people to read."""
    _, cell = _documented()[name]
    literal = re.fullmatch(r"`([^`]+)`(?: \(.*\))?", cell)
    if literal is None:
        return
    default = _model()[name]
    if default is None:
        return  # derived at run time (``<state>/...``): the doc says from what
    if hasattr(default, "address"):
        default = default.address
    elif isinstance(default, tuple):
        default = ",".join(default)
    if isinstance(default, int | float) and not isinstance(default, bool):
        assert float(literal[1]) == default
    else:
        assert literal[1] == str(default)
