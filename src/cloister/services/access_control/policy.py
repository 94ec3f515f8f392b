"""The role → API policy, evaluated by casbin from Teaclave's ``model.conf`` and ``policy.csv``.

The packaged files reproduce the reference's decisions (§5.1); an operator points
``[access_control] policy_dir`` at a directory with their own two files to change them, and
a restart applies the change. A request the policy cannot evaluate is denied.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import casbin

from cloister.errors import ConfigurationError

logger = logging.getLogger(__name__)
PACKAGED_POLICY_DIR = Path(__file__).resolve().parent
MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"


class ApiPolicy:
    def __init__(self, policy_dir: Path | None = None) -> None:
        directory = policy_dir or PACKAGED_POLICY_DIR
        model, policy = directory / MODEL_FILE, directory / POLICY_FILE
        for path in (model, policy):
            if not path.is_file():
                raise ConfigurationError(f"access control policy file {path} does not exist")
        try:
            self._enforcer = casbin.Enforcer(str(model), str(policy))
        except Exception as exc:
            raise ConfigurationError(f"access control policy in {directory} cannot be loaded: {exc}") from None
        self._lock = threading.Lock()
        self.source = directory

    def allows(self, role: str, api: str) -> bool:
        """Whether ``role`` (the part before its first ``-``) may call ``api``; errors deny."""
        try:
            with self._lock:
                return bool(self._enforcer.enforce(role, api))
        except Exception:
            logger.exception("access control policy could not evaluate a request; denying it")
            return False
