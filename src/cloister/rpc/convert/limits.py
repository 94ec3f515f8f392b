"""Upper bounds on what one request may carry, so no field can exhaust memory or storage.

The limits are generous: Teaclave had none beyond the 4 MiB gRPC message size, which is also the
only limit of a function's payload (``[rpc] max_message_bytes``). They are constants, not
settings; ``docs/api.md`` lists them. A request over one is refused with INVALID_ARGUMENT naming
the field, its size and the limit.
"""

from __future__ import annotations

from collections.abc import Sized

from cloister.errors import InvalidArgumentError

MAX_NAME_CHARS = 1024
"""Function names, data names, argument keys, user ids."""
MAX_TEXT_CHARS = 64 * 1024
"""Descriptions and argument default values."""
MAX_ARGUMENTS = 1000
MAX_FILES = 1000
"""Declared inputs (or outputs) of a function; entries of one ownership list."""
MAX_USERS = 1000
"""Users in an allowlist, an owner list or one data name's owners."""
MAX_ARGUMENTS_JSON_BYTES = 2 * 1024 * 1024
"""Teaclave passes whole images as arguments (face detection), so arguments may be large."""


def size_text(size: int) -> str:
    """``2097152 bytes (2 MiB)``: exact, and readable when it is a round number of KiB or MiB."""
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size} bytes ({size // scale} {unit})"
    return f"{size} bytes"


def too_large(what: str, size: int, limit: int) -> InvalidArgumentError:
    """The refusal of a field of ``size`` bytes over ``limit``."""
    return InvalidArgumentError(f"{what} is {size} bytes, over the limit of {size_text(limit)}")


def check_text(value: str, what: str, limit: int = MAX_NAME_CHARS) -> str:
    """Return ``value`` if it has at most ``limit`` characters, else say which field is too long."""
    if len(value) > limit:
        raise InvalidArgumentError(f"{what} is {len(value)} characters long, over the limit of {limit}")
    return value


def check_count(values: Sized, what: str, limit: int) -> None:
    if len(values) > limit:
        raise InvalidArgumentError(f"too many {what}: {len(values)}, over the limit of {limit}")


def check_users(users: list[str], what: str) -> list[str]:
    """A bounded list of bounded user ids."""
    check_count(users, what, MAX_USERS)
    for user in users:
        check_text(user, f"a user id in {what}")
    return users
