"""The errors Cloister raises and the gRPC status each one travels as (layer 1: no grpc here).

Every error a user can see is a ``CloisterError`` whose ``status`` is the gRPC code of the
reference and whose ``message`` is safe to show to anyone::

    CloisterError
    ├── AuthenticationError          16 UNAUTHENTICATED
    ├── UserExistsError              16 UNAUTHENTICATED "user id exist" (the authentication API)
    ├── AccessDeniedError             7 PERMISSION_DENIED
    ├── InvalidArgumentError          3 INVALID_ARGUMENT (every refused request field: it names
    │   │                                  the field, the value and what is valid)
    │   ├── InvalidChoiceError           a value that is not one of a field's choices
    │   ├── InvalidTaskIdError           "invalid task id"
    │   ├── InvalidFunctionIdError       "invalid function id"
    │   └── InvalidDataIdError           "invalid data id"
    ├── FailedOperationError          2 UNKNOWN (the reference's "failed to ..." answers)
    ├── NotFoundError                 5 NOT_FOUND (storage, internal only)
    ├── ResourceExhaustedError        8 RESOURCE_EXHAUSTED
    │   └── DiskFullError                a service's disk is full (ENOSPC, EDQUOT, SQLITE_FULL)
    ├── UnimplementedError           12 UNIMPLEMENTED
    ├── UnavailableError             14 UNAVAILABLE
    ├── DeadlineExceededError         4 DEADLINE_EXCEEDED
    ├── ConflictError                10 ABORTED (a conditional storage commit lost a race; internal only)
    ├── InternalError                13 INTERNAL
    │   ├── MalformedRequestError        a message between services that cannot be used
    │   └── IllegalTransitionError       a task status change the state machine forbids
    ├── AttestationError             16 UNAUTHENTICATED (a peer failed verification)
    ├── FileIntegrityError              a file failed its integrity check (task failure reason)
    │   └── FileNameMismatchError        a teaclave-file-128 file was renamed
    ├── TransferError                   a file could not be downloaded or uploaded (task failure reason)
    └── TaskError                       (SDK only: how a task ended)
        ├── TaskFailedError               the function or its data failed
        ├── TaskCancelledError            a participant cancelled it
        ├── ExecutorLostError             its execution service stopped answering
        └── TaskNotReadyError             it cannot run yet: what is missing (approvals, data, invoke, an executor)
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Iterable


class StatusCode(enum.IntEnum):
    """gRPC status codes, numbered as on the wire."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class CloisterError(Exception):
    """Base of every error Cloister reports; ``message`` never holds secrets."""

    status: StatusCode = StatusCode.INTERNAL
    default_message: str = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)


class AuthenticationError(CloisterError):
    status = StatusCode.UNAUTHENTICATED
    default_message = "authentication failed"


class UserExistsError(CloisterError):
    """A user id is taken; UNAUTHENTICATED on the wire, as every answer of the authentication API."""

    status = StatusCode.UNAUTHENTICATED
    default_message = "user id exist"


class AccessDeniedError(CloisterError):
    status = StatusCode.PERMISSION_DENIED
    default_message = "permission denied"


class InvalidArgumentError(CloisterError):
    status = StatusCode.INVALID_ARGUMENT
    default_message = "invalid argument"


def quoted(value: str, limit: int = 64) -> str:
    """``value`` as a message may show it: quoted, control characters escaped, at most ``limit``
    characters (then ``…``), so a hostile value cannot forge a log line or flood a message."""
    shown = repr(value[:limit])
    return shown[:-1] + "…" + shown[-1] if len(value) > limit else shown


class InvalidChoiceError(InvalidArgumentError):
    """A field's value is none of the values it may take.

    The message names the field, the value given and the valid choices, e.g. ``executor_type
    'pyhton' is not one of: builtin, python, wasm (also: mesapy, wamr)``; ``also`` lists other
    spellings that are accepted too (Teaclave's names), ``hint`` says more where it helps.
    """

    def __init__(
        self, field: str, value: str, choices: Iterable[str], *, also: Iterable[str] = (), hint: str = ""
    ) -> None:
        message = f"{field} {quoted(value)} is not one of: {', '.join(choices)}"
        aliases = list(also)
        if aliases:
            message += f" (also: {', '.join(aliases)})"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class InvalidDataNameError(InvalidArgumentError):
    """A data name (a function's input or output, an ownership or data-map entry) is not a name."""


class InvalidTaskIdError(InvalidArgumentError):
    default_message = "invalid task id"


class InvalidFunctionIdError(InvalidArgumentError):
    default_message = "invalid function id"


class InvalidDataIdError(InvalidArgumentError):
    default_message = "invalid data id"


class FailedOperationError(CloisterError):
    status = StatusCode.UNKNOWN
    default_message = "operation failed"


class NotFoundError(CloisterError):
    status = StatusCode.NOT_FOUND
    default_message = "not found"


class ResourceExhaustedError(CloisterError):
    status = StatusCode.RESOURCE_EXHAUSTED
    default_message = "resource exhausted"


class DiskFullError(ResourceExhaustedError):
    """A disk a service writes to is full: the write was refused whole, and writes succeed again,
    without a restart, once space is freed.

    The message names the service, never a path: clients must not learn the host's layout. The
    service logs the directory and its free space for the operator.
    """

    default_message = "out of disk space; try again once space is freed"
    marker = "out of disk space"
    """What every message of this error says, so that a client can tell it from other exhaustion."""

    @classmethod
    def of(cls, service: str) -> DiskFullError:
        """The error a client sees when ``service``'s disk is full."""
        return cls(f"the {service} service is out of disk space; try again once space is freed")


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""OS errors that mean the disk (or the user's quota on it) has no room for the write."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for want of disk space (a :class:`DiskFullError` or the OS error)."""
    return isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS)


class UnimplementedError(CloisterError):
    status = StatusCode.UNIMPLEMENTED
    default_message = "not implemented"


class UnavailableError(CloisterError):
    status = StatusCode.UNAVAILABLE
    default_message = "service unavailable"


class DeadlineExceededError(CloisterError):
    status = StatusCode.DEADLINE_EXCEEDED
    default_message = "deadline exceeded"


class InternalError(CloisterError):
    status = StatusCode.INTERNAL
    default_message = "internal error"


class ConflictError(CloisterError):
    """A conditional storage commit found its record changed since it was read: read again and decide again."""

    status = StatusCode.ABORTED
    default_message = "the record changed meanwhile"


class MalformedRequestError(InternalError):
    """A request between services could not be used: a message that does not parse, a scheduler
    report the reference answers with INTERNAL, audit metadata.

    A user's mistake in a field is an :class:`InvalidArgumentError` instead (a deliberate
    difference from the reference, which answered those INTERNAL too).
    """

    default_message = "malformed request"


class IllegalTransitionError(InternalError):
    """A task status change that ``cloister.model.tasks.TRANSITIONS`` refuses, or by the wrong actor."""

    default_message = "illegal task transition"


class AttestationError(CloisterError):
    """A peer's evidence, identity or certificate did not verify."""

    status = StatusCode.UNAUTHENTICATED
    default_message = "attestation failed"


class FileIntegrityError(CloisterError):
    """An encrypted file is truncated, tampered with, under another key or not what was registered.

    Raised before any of the file's plaintext is released.
    """

    status = StatusCode.DATA_LOSS


class FileNameMismatchError(FileIntegrityError):
    """A teaclave-file-128 file was renamed: its name is bound into its keys."""

    default_message = "file failed its integrity check"


class TransferError(CloisterError):
    """A file could not be fetched from or written to its URL."""

    status = StatusCode.UNAVAILABLE
    default_message = "file transfer failed"


class ConfigurationError(CloisterError):
    """The settings or the state directory cannot be used; raised at start-up only."""

    status = StatusCode.FAILED_PRECONDITION
    default_message = "invalid configuration"

    @classmethod
    def not_started(cls, state_dir: object) -> ConfigurationError:
        """What ``cloister status`` and ``Client.connect_local`` say before the first ``cloister up``."""
        return cls(
            f"no Cloister has been started with state directory {state_dir}: start one with "
            "`cloister up` (or `make run`), or give the --state-dir or --config it was started with"
        )


class TaskError(CloisterError):
    """A task ended without a result; raised by the SDK when waiting for one."""

    status = StatusCode.UNKNOWN

    def __init__(self, task_id: str, reason: str) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id}: {reason}")


class TaskFailedError(TaskError):
    """The function, its arguments or its data failed."""


class TaskCancelledError(TaskError):
    """A participant cancelled the task."""


class ExecutorLostError(TaskFailedError):
    """The execution service running the task stopped answering."""


class TaskNotReadyError(TaskError):
    """The task cannot run as it stands, so waiting for its result would never end.

    Its ``reason`` says what is missing: approvals, unassigned data, an invoke, or an execution
    service able to run it.
    """

    status = StatusCode.FAILED_PRECONDITION


_BY_STATUS: dict[StatusCode, type[CloisterError]] = {
    StatusCode.UNAUTHENTICATED: AuthenticationError,
    StatusCode.PERMISSION_DENIED: AccessDeniedError,
    StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    StatusCode.UNKNOWN: FailedOperationError,
    StatusCode.NOT_FOUND: NotFoundError,
    StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    StatusCode.UNIMPLEMENTED: UnimplementedError,
    StatusCode.UNAVAILABLE: UnavailableError,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    StatusCode.INTERNAL: InternalError,
    StatusCode.ABORTED: ConflictError,
    StatusCode.DATA_LOSS: FileIntegrityError,
}

_INVALID_ARGUMENT_BY_MESSAGE: dict[str, type[CloisterError]] = {
    InvalidTaskIdError.default_message: InvalidTaskIdError,
    InvalidFunctionIdError.default_message: InvalidFunctionIdError,
    InvalidDataIdError.default_message: InvalidDataIdError,
}

# The authentication API answers every refusal UNAUTHENTICATED (reference §2.2); only some mean
# the caller's login is bad, and only those may make a client log in again.
_UNAUTHENTICATED_BY_MESSAGE: dict[str, type[CloisterError]] = {
    UserExistsError.default_message: UserExistsError,
    AccessDeniedError.default_message: AccessDeniedError,
    "invalid role": InvalidArgumentError,
    "invalid user id": InvalidArgumentError,
    "service internal error": InternalError,
}


_MESSAGE_TOO_LARGE = "message larger than max"
"""What gRPC itself answers for a message over a channel's limit, before any of our code sees it."""
MESSAGE_SIZE_HINT = (
    "; the settings [rpc] max_message_bytes (requests to the platform) and internal_max_message_bytes"
    " (between its services) set the limits, and files travel by URL, never in a request"
)
"""Appended to gRPC's own text, which names no setting."""


def error_for_status(status: int, message: str) -> CloisterError:
    """The most specific error for a status a server sent (the client side of the mapping)."""
    code = StatusCode(status) if status in StatusCode._value2member_map_ else StatusCode.UNKNOWN
    cls = _BY_STATUS.get(code, CloisterError)
    if code is StatusCode.INVALID_ARGUMENT:
        cls = _INVALID_ARGUMENT_BY_MESSAGE.get(message, cls)
    elif code is StatusCode.UNAUTHENTICATED:
        cls = _UNAUTHENTICATED_BY_MESSAGE.get(message, cls)
    elif code is StatusCode.RESOURCE_EXHAUSTED and DiskFullError.marker in message:
        cls = DiskFullError
    elif code is StatusCode.RESOURCE_EXHAUSTED and _MESSAGE_TOO_LARGE in message:
        message += MESSAGE_SIZE_HINT
    error = cls(message)
    error.status = code
    return error
