"""docs/requests.md states the limits the code applies, and a field over one is refused naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.config import RPCSettings
from cloister.errors import InvalidArgumentError, StatusCode
from cloister.file_agent.schemes import MAX_URL_CHARS
from cloister.rpc.convert import limits

DOC = (Path(__file__).resolve().parents[3] / "docs" / "requests.md").read_text()


@pytest.mark.parametrize(
    "stated",
    [
        f"| {limits.size_text(RPCSettings().max_message_bytes)} | `[rpc] max_message_bytes`",
        f"| `function_arguments` (the JSON text) | {limits.size_text(limits.MAX_ARGUMENTS_JSON_BYTES)} |",
        f"| a function name, argument key, user id or data id | {limits.MAX_NAME_CHARS} characters |",
        f"| a description or an argument's default | {limits.MAX_TEXT_CHARS} characters |",
        f"| a function's arguments | {limits.MAX_ARGUMENTS} |",
        f"AssignData's inputs or outputs | {limits.MAX_FILES} |",
        f"one data name's owners | {limits.MAX_USERS} |",
        f"| a file's URL | {MAX_URL_CHARS} characters |",
    ],
)
def test_the_documented_limits_are_the_ones_applied(stated: str) -> None:
    assert stated in DOC


def test_a_field_over_its_limit_is_refused_naming_it() -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        limits.check_text("x" * 1025, "function name")
    assert refused.value.status is StatusCode.INVALID_ARGUMENT
    assert refused.value.message == "function name is 1025 characters long, over the limit of 1024"
    with pytest.raises(InvalidArgumentError, match=r"^too many function arguments: 1001, over the limit of 1000$"):
        limits.check_count(range(1001), "function arguments", limits.MAX_ARGUMENTS)
    assert limits.too_large("payload", 10, 4).message == "payload is 10 bytes, over the limit of 4 bytes"
    assert limits.size_text(3 * 1024) == "3072 bytes (3 KiB)"
