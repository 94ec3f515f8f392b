"""The deployment's access policy, evaluated by casbin: four files in one directory.

- ``model.conf`` and ``policy.csv`` are Teaclave's role → API rules (§5.1), plus a row for
  Cloister's ``list_tasks``: which roles may call which frontend API at all.
- ``object_model.conf`` and ``object_policy.csv`` are attribute rules: which user may act on
  which function, file or task. Each row of ``object_policy.csv`` allows one action when its
  rule, an expression over the caller (``r.sub``) and the object (``r.obj``), is true.

The packaged files reproduce the reference's decisions; an operator copies them
(``cloister policy init``), edits them, and points ``[access_control] policy_dir`` at the
copy. A restart applies a change. A request the policy cannot evaluate is denied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import casbin
from casbin import util as casbin_util
from casbin.fast_enforcer import FastEnforcer

from cloister.errors import ConfigurationError
from cloister.model.access import Action, Query, Subject

logger = logging.getLogger(__name__)
PACKAGED_POLICY_DIR = Path(__file__).resolve().parent
API_MODEL_FILE = "model.conf"
API_POLICY_FILE = "policy.csv"
OBJECT_MODEL_FILE = "object_model.conf"
OBJECT_POLICY_FILE = "object_policy.csv"
POLICY_FILES = (API_MODEL_FILE, API_POLICY_FILE, OBJECT_MODEL_FILE, OBJECT_POLICY_FILE)

RULE_FUNCTIONS: dict[str, Callable[..., Any]] = {"len": len}
"""Functions object rules may call besides casbin's own."""


class _ParsedOnceEnforcer(FastEnforcer):  # type: ignore[misc]
    """casbin parses the matcher again for every policy row of every request when rules use
    ``eval``; this keeps each distinct expression's parse. With ``cache_key_order=[0]`` casbin
    also looks at only the rows whose first field (the action) is the request's first, so a
    decision costs tens of microseconds rather than most of a millisecond."""

    def __init__(self, model: str, policy: str, cache_key_order: list[int] | None = None) -> None:
        self._expressions: dict[str, Any] = {}
        super().__init__(model, policy, cache_key_order=cache_key_order)

    def _get_expression(self, expr: str, functions: dict[str, Any] | None = None) -> Any:
        expression = self._expressions.get(expr)
        if expression is None:
            expression = self._expressions[expr] = casbin.Enforcer._get_expression(expr, functions)
        expression.functions = functions or {}
        return expression


def _enforcer(directory: Path, model: str, policy: str, by_action: bool = False) -> casbin.Enforcer:
    paths = (directory / model, directory / policy)
    for path in paths:
        if not path.is_file():
            raise ConfigurationError(
                f"access control policy file {path} does not exist; "
                "`cloister policy init DIR` writes the default policy's files to start from"
            )
    try:
        if by_action:
            return _ParsedOnceEnforcer(str(paths[0]), str(paths[1]), cache_key_order=[0])
        return _ParsedOnceEnforcer(str(paths[0]), str(paths[1]))
    except Exception as exc:
        raise ConfigurationError(f"access control policy {paths[1]} cannot be loaded: {exc}") from None


def _check_rules(rows: list[list[str]], path: Path) -> None:
    """Refuse rules that do not parse, rather than deny every request they are asked about
    without saying why."""
    for row in rows:
        if len(row) != 2:
            raise ConfigurationError(f"{path}: the row {', '.join(row)!r} must be 'p, ACTION, RULE'")
        try:
            casbin.Enforcer._get_expression(casbin_util.escape_assertion(row[1]))
        except SyntaxError as exc:
            raise ConfigurationError(f"{path}: the rule for {row[0]} does not parse: {exc.msg}: {row[1]}") from None


class AccessPolicy:
    def __init__(self, policy_dir: Path | None = None) -> None:
        self.source = policy_dir or PACKAGED_POLICY_DIR
        self._api = _enforcer(self.source, API_MODEL_FILE, API_POLICY_FILE)
        # Read once as written, to check and describe; evaluated through an index by action.
        self._rows: list[list[str]] = _enforcer(self.source, OBJECT_MODEL_FILE, OBJECT_POLICY_FILE).get_policy()
        _check_rules(self._rows, self.source / OBJECT_POLICY_FILE)
        self._ruled_actions = frozenset(row[0] for row in self._rows)
        self._objects = _enforcer(self.source, OBJECT_MODEL_FILE, OBJECT_POLICY_FILE, by_action=True)
        for name, function in RULE_FUNCTIONS.items():
            self._objects.add_function(name, function)

    def allows_api(self, role: str, api: str) -> bool:
        """Whether ``role`` (the part before its first ``-``) may call ``api``."""
        return self._evaluate(self._api, role, api)

    def allows(self, subject: Subject, query: Query) -> bool:
        """Whether ``subject`` may take ``query.action`` on the object ``query`` describes."""
        if query.action not in self._ruled_actions:
            return False  # no row allows it (casbin would rather raise)
        return self._evaluate(
            self._objects,
            str(query.action),
            SimpleNamespace(**subject.attributes()),
            SimpleNamespace(**query.attributes),
        )

    def rule_counts(self) -> dict[str, int]:
        """How many rows may allow each action Cloister asks about (0: it is always denied)."""
        counts = dict.fromkeys(Action, 0)
        for row in self._rows:
            if row[0] in counts:
                counts[Action(row[0])] += 1
        return {str(action): count for action, count in counts.items()}

    def unknown_actions(self) -> list[str]:
        """Actions with rows that Cloister never asks about: most likely misspelt."""
        known = set(Action)
        return sorted(self._ruled_actions - known)

    @staticmethod
    def _evaluate(enforcer: casbin.Enforcer, *request: Any) -> bool:
        try:
            return enforcer.enforce(*request) is True
        except Exception as exc:
            # The rule's text, never the attributes' values, which name users.
            logger.error("the access control policy could not evaluate a request (%s); denying it", exc)
            return False
