"""A staged builtin-echo task for tests of what carries or runs staged tasks."""

from __future__ import annotations

import uuid
from typing import Any

from cloister.model.tasks import StagedTask


def echo_task(**changes: Any) -> StagedTask:
    """A staged ``builtin-echo`` task of alice's with no data, with ``changes`` to its fields."""
    fields: dict[str, Any] = {
        "task_id": uuid.uuid4(),
        "function_id": uuid.uuid4(),
        "user_id": "alice",
        "executor": "builtin",
        "executor_type": "builtin",
        "function_name": "builtin-echo",
        "function_arguments": {},
        "function_payload": b"",
        "input_data": {},
        "output_data": {},
    }
    return StagedTask(**{**fields, **changes})
