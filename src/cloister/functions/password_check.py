"""``builtin-password-check`` (reference §12.13): is a password among the exposed ones?

Reads the candidate's first line and streams the exposed list, so the list may be any size.
"""

from __future__ import annotations

from typing import Any

from cloister.functions import FileRuntime
from cloister.functions._text import lines

NAME = "builtin-password-check"


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    with runtime.open_input("password") as stream:
        password = next(lines(stream), "").strip()
    with runtime.open_input("exposed_passwords") as stream:
        exposed = any(line.strip() == password for line in lines(stream))
    return "true" if exposed else "false"
