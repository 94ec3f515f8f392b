"""Functions, their declared arguments and files, and per-user function lists (reference §6)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from cloister.errors import InvalidArgumentError, InvalidChoiceError, quoted
from cloister.model.executors import SPELLINGS, ExecutorKind

EXECUTOR_TYPES = {s.function_type: s.function_type_name for s in SPELLINGS.values()}
"""Request spelling of an executor type → its persisted name."""
_EXECUTOR_TYPE_BY_NAME = {v: k for k, v in EXECUTOR_TYPES.items()}

EXECUTORS = {s.executor: s.executor_name for s in SPELLINGS.values()}
"""Request spelling of a task's executor → its persisted name (reference §3.2)."""
_EXECUTOR_BY_NAME = {v: k for k, v in EXECUTORS.items()}

_KIND_BY_SPELLING = {
    spelling: kind for kind, s in SPELLINGS.items() for spelling in (kind.value, s.function_type, s.executor)
}
"""Every name of a kind: Cloister's (``python``, ``wasm``) and Teaclave's (``mesapy``, ``wamr``), accepted
in both fields, executor_type and executor."""
_KIND_NAMES = [kind.value for kind in ExecutorKind]
_ALSO_NAMES = sorted(set(_KIND_BY_SPELLING) - set(_KIND_NAMES))


def payload_sha256(payload: bytes) -> str:
    """A payload's SHA-256 (hex): how records, staged tasks, manifests and caches name it."""
    return hashlib.sha256(payload).hexdigest()


EMPTY_PAYLOAD_SHA256 = payload_sha256(b"")
"""A built-in's payload: nothing to store, fetch or cache."""


def _kind(field: str, text: str) -> ExecutorKind:
    kind = _KIND_BY_SPELLING.get(text)
    if kind is None:
        raise InvalidChoiceError(field, text, _KIND_NAMES, also=_ALSO_NAMES)
    return kind


def parse_executor_type(text: str) -> str:
    """A function's executor type, as Teaclave spells it (``python``, ``wamr``), from any of its names.

    Raises:
        InvalidChoiceError: naming the valid names.
    """
    return SPELLINGS[_kind("executor_type", text)].function_type


def parse_executor(text: str) -> str:
    """A task's executor, as Teaclave spells it (``mesapy``, ``wamr``), from any of its names."""
    return SPELLINGS[_kind("executor", text)].executor


def executor_for(executor_type: str, text: str) -> str:
    """The task executor ``text`` names, if it runs functions of ``executor_type``.

    Teaclave accepted any pair here and failed the task when it ran (``function not available``);
    a pair that cannot run is refused when the task is created instead.

    Raises:
        InvalidChoiceError: ``text`` names no executor.
        InvalidArgumentError: it names one that does not run this function, saying which does.
    """
    executor = parse_executor(text)
    wanted = next(kind for kind, s in SPELLINGS.items() if s.function_type == executor_type)
    if SPELLINGS[wanted].executor != executor:
        raise InvalidArgumentError(
            f"executor {quoted(text)} cannot run this function, whose executor_type is {wanted.value}; "
            f"use executor {wanted.value}"
        )
    return executor


@dataclass(frozen=True)
class FunctionArgument:
    key: str
    default_value: str = ""
    allow_overwrite: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "default_value": self.default_value, "allow_overwrite": self.allow_overwrite}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionArgument:
        return cls(data["key"], data["default_value"], data["allow_overwrite"])


@dataclass(frozen=True)
class FunctionFile:
    """A declared input or output: the data name the function opens."""

    name: str
    description: str = ""
    optional: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "optional": self.optional}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionFile:
        return cls(data["name"], data["description"], data["optional"])


@dataclass(frozen=True)
class Function:
    id: uuid.UUID
    name: str
    description: str
    public: bool
    executor_type: str
    payload_sha256: str
    """Of the payload, which is stored in a record of its own (``ids.payload_key``)."""
    arguments: tuple[FunctionArgument, ...]
    inputs: tuple[FunctionFile, ...]
    outputs: tuple[FunctionFile, ...]
    owner: str
    user_allowlist: tuple[str, ...]
    usage_quota: int | None
    disabled: bool = False
    """Set by DisableFunction; the policy decides what it means (by default nothing, as in Teaclave)."""
    inline_payload: bytes | None = field(default=None, repr=False, compare=False)
    """The payload of a record written by an earlier version, which kept it inside the record (as a
    JSON list of integers); kept there while the record lives, and None for every new record."""

    @property
    def external_id(self) -> str:
        return f"function-{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "description": self.description,
            "public": self.public,
            "executor_type": executor_type_name(self.executor_type),
            "payload_sha256": self.payload_sha256,
            "arguments": [a.to_json() for a in self.arguments],
            "inputs": [f.to_json() for f in self.inputs],
            "outputs": [f.to_json() for f in self.outputs],
            "owner": self.owner,
            "user_allowlist": list(self.user_allowlist),
            "usage_quota": self.usage_quota,
            "disabled": self.disabled,
            **({} if self.inline_payload is None else {"payload": list(self.inline_payload)}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Function:
        inline = bytes(data["payload"]) if "payload" in data else None
        return cls(
            id=uuid.UUID(data["id"]),
            name=data["name"],
            description=data["description"],
            public=data["public"],
            executor_type=executor_type_from_name(data["executor_type"]),
            payload_sha256=payload_sha256(inline) if inline is not None else parse_sha256(data["payload_sha256"]),
            arguments=tuple(FunctionArgument.from_json(a) for a in data["arguments"]),
            inputs=tuple(FunctionFile.from_json(f) for f in data["inputs"]),
            outputs=tuple(FunctionFile.from_json(f) for f in data["outputs"]),
            owner=data["owner"],
            user_allowlist=tuple(data["user_allowlist"]),
            usage_quota=data["usage_quota"],
            disabled=data.get("disabled", False),
            inline_payload=inline,
        )


def parse_sha256(text: object) -> str:
    """``text`` if it is a SHA-256 digest in lower-case hex (it may end up in a storage key).

    Raises:
        ValueError: it is not.
    """
    if not isinstance(text, str) or len(text) != 64 or text.strip("0123456789abcdef"):
        raise ValueError(f"not a SHA-256 hex digest: {text!r}"[:120])
    return text


@dataclass(frozen=True)
class FunctionUpload:
    """A function as RegisterFunction or UpdateFunction brings it: its record, and its payload."""

    function: Function
    payload: bytes = field(repr=False)

    @classmethod
    def of(cls, function: Function, payload: bytes) -> FunctionUpload:
        """``function`` (whatever digest it had) with ``payload`` and the payload's digest."""
        return cls(replace(function, payload_sha256=payload_sha256(payload), inline_payload=None), payload)


def normalize_quota(quota: int) -> int | None:
    """A negative request quota means unlimited."""
    return None if quota < 0 else quota


@dataclass(frozen=True)
class FunctionUsage:
    function_id: uuid.UUID
    use_numbers: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"function_id": str(self.function_id), "use_numbers": self.use_numbers}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionUsage:
        return cls(uuid.UUID(data["function_id"]), data["use_numbers"])


@dataclass(frozen=True)
class UserFunctions:
    """A user's function lists (``functions-of-<keyed hash of the id>``): functions they registered and may use."""

    id: str
    registered_functions: tuple[str, ...] = ()
    allowed_functions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "registered_functions": list(self.registered_functions),
            "allowed_functions": list(self.allowed_functions),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserFunctions:
        return cls(data["id"], tuple(data["registered_functions"]), tuple(data["allowed_functions"]))


def executor_name(executor: str) -> str:
    return EXECUTORS[executor]


def executor_type_name(executor_type: str) -> str:
    """The serde name of a function executor type (``Python``), as records store it."""
    return EXECUTOR_TYPES[executor_type]


def executor_type_from_name(name: str) -> str:
    return _EXECUTOR_TYPE_BY_NAME[name]


def executor_from_name(name: str) -> str:
    return _EXECUTOR_BY_NAME[name]
