"""Each layer imports only from its own layer or below (STYLE.md), and services never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import cloister

ROOT = Path(cloister.__file__).parent
LAYERS = {
    "_proto": 0,
    "errors": 1,
    "model": 1,
    "config": 1,
    "crypto": 2,
    "attestation": 2,
    "rpc": 3,
    "storage": 3,
    "file_agent": 3,
    "functions": 4,
    "executors": 4,
    "services": 5,
    "sdk": 5,
    "logs": 6,
    "launcher": 6,
    "preflight": 6,
    "cli": 6,
    "console": 6,
    "testing": 6,
    "serve": 6,
    "__main__": 6,
    "__init__": 0,
}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("cloister.")}


def _module_name(path: Path) -> str:
    return ".".join(("cloister", *path.relative_to(ROOT).with_suffix("").parts))


def test_no_module_imports_a_higher_layer() -> None:
    violations = []
    for path in ROOT.rglob("*.py"):
        module = _module_name(path)
        if module.startswith("cloister._proto"):
            continue
        for imported in _imports(path):
            if _layer(imported) > _layer(module):
                violations.append(f"{module} imports {imported}")
    assert violations == []


def test_services_do_not_import_each_other() -> None:
    violations = []
    for path in (ROOT / "services").rglob("*.py"):
        module = _module_name(path)
        parts = module.split(".")
        if len(parts) < 4:
            continue
        own = parts[2]
        for imported in _imports(path):
            other = imported.split(".")
            if len(other) > 2 and other[1] == "services" and other[2] != own:
                violations.append(f"{module} imports {imported}")
    assert violations == []
