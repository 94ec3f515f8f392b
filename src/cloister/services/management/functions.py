"""Functions: register, update, read, list, delete and disable (reference §6.2-§6.5).

Each change that touches several records (the function, its usage counter, users' function
lists) is one storage commit, made while holding the locks of the records it rewrites.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from dataclasses import replace

from cloister.errors import InvalidArgumentError, InvalidChoiceError, InvalidFunctionIdError, quoted
from cloister.functions import builtin_names
from cloister.model.access import Action, Subject, function_query, user_query
from cloister.model.functions import EMPTY_PAYLOAD_SHA256, Function, FunctionUpload, FunctionUsage, UserFunctions
from cloister.model.ids import ExternalId, parse_id, payload_key, requirements_key, usage_key
from cloister.rpc.authorizer import Authorizer, denied, require
from cloister.services.management.locks import KeyLocks, retrying
from cloister.services.management.naming import Names, user_tag
from cloister.storage.client import StorageClient
from cloister.storage.ops import Check, Delete, Op, Put
from cloister.storage.records import decode, load, put

_PREFIX = "function"
USER_RECORD_PREFIX = b"functions-of"
"""Users' function lists: ``functions-of-<keyed hash of the user id>`` (``naming``)."""
LEGACY_USER_RECORD_PREFIX = b"user"
"""Where earlier versions kept them: ``user-<uuid v5 of the id>``, which anyone can compute from a guess."""
_UPGRADE_CHUNK = 500

_MAX_LABELS = 32
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_builtin(function: Function) -> None:
    """A builtin function's name selects the built-in that runs it (§11.4), so it must name one.

    Teaclave accepted any name and failed each task with ``Function not found.``; the name is
    refused at registration instead, listing the built-ins.
    """
    if function.executor_type == "builtin" and function.name not in builtin_names():
        raise InvalidChoiceError(
            "name",
            function.name,
            sorted(builtin_names()),
            hint="a function of executor_type builtin is the built-in its name selects",
        )


class FunctionView(enum.Enum):
    FULL = "full"
    REDACTED = "redacted"
    """Payload and allowlist hidden: for a user the policy lets see only that much."""


class FunctionService:
    def __init__(self, storage: StorageClient, locks: KeyLocks, authorizer: Authorizer) -> None:
        self._storage = storage
        self._locks = locks
        self._authorizer = authorizer
        self._names = Names(storage)

    async def user_record_key(self, user_id: str) -> bytes:
        """Where ``user_id``'s function lists are stored."""
        return (await self._user_keys([user_id]))[user_id]

    async def _user_keys(self, user_ids: list[str]) -> dict[str, bytes]:
        """The keys of users' function lists (``functions-of-<keyed hash of the id>``), by user id."""
        key = await self._names.key()
        return {u: USER_RECORD_PREFIX + b"-" + user_tag(key, "functions", u) for u in dict.fromkeys(user_ids)}

    async def _require(self, subject: Subject, action: Action, function: Function) -> None:
        await require(self._authorizer, subject, function_query(action, function))

    async def _load(self, function_id: ExternalId) -> Function:
        return await load(self._storage, function_id, Function.from_json, InvalidFunctionIdError)

    async def _load_for_change(self, function_id: ExternalId) -> tuple[Function, Check]:
        """The function, and the check that it is unchanged when the change is committed."""
        (value,) = await self._storage.read([function_id.key])
        function = decode(value, Function.from_json)
        if function is None:
            raise InvalidFunctionIdError()
        return function, Check.of(function_id.key, value)

    async def _user_records(self, keys: dict[str, bytes]) -> tuple[dict[str, UserFunctions | None], list[Check]]:
        """The function lists stored under ``keys`` (``None`` where a user has none yet), and the
        checks that they are unchanged when lists derived from them are committed."""
        values = await self._storage.read(list(keys.values()))
        records = {u: decode(v, UserFunctions.from_json) for u, v in zip(keys, values, strict=True)}
        return records, [Check.of(k, v) for k, v in zip(keys.values(), values, strict=True)]

    async def upgrade_user_records(self) -> int:
        """Move the function lists earlier versions stored under ``user-<uuid v5>`` to their keyed
        names, a chunk per commit; how many were moved. It runs while management serves, so a
        list may meanwhile have been started under the keyed name: the two are merged."""
        moved = 0
        while legacy := (await self._storage.keys_with_prefix(LEGACY_USER_RECORD_PREFIX))[:_UPGRADE_CHUNK]:
            moved += await retrying(functools.partial(self._upgrade, legacy))
        return moved

    async def _upgrade(self, legacy: list[bytes]) -> int:
        values = await self._storage.read(legacy)
        stored = [(key, value) for key, value in zip(legacy, values, strict=True) if value is not None]
        found = [(key, value, UserFunctions.from_json(json.loads(value.value))) for key, value in stored]
        keys = await self._user_keys([record.id for _, _, record in found])
        current = await self._storage.read([keys[record.id] for _, _, record in found])
        ops: list[Op] = []
        for (old_key, value, record), existing in zip(found, current, strict=True):
            newer = decode(existing, UserFunctions.from_json)
            merged = record if newer is None else _merged(record, newer)
            ops += [Check.of(old_key, value), Check.of(keys[record.id], existing), Delete(old_key)]
            ops.append(put(keys[record.id], merged))
        await self._storage.commit(ops)
        return len(found)

    async def register(self, upload: FunctionUpload) -> str:
        """Store the function and its payload, list it for its owner and allow-listed users, start
        its counter at 0."""
        function = upload.function
        check_builtin(function)
        function_id = function.external_id
        users = [function.owner, *function.user_allowlist]

        async def attempt() -> None:
            keys = await self._user_keys(users)
            async with self._locks.hold(*keys.values()):
                records, checks = await self._user_records(keys)
                lists = {u: r or UserFunctions(id=u) for u, r in records.items()}
                owner = lists[function.owner]
                lists[function.owner] = replace(owner, registered_functions=(*owner.registered_functions, function_id))
                for user in function.user_allowlist:
                    record = lists[user]
                    lists[user] = replace(record, allowed_functions=(*record.allowed_functions, function_id))
                ops: list[Op] = [*checks, put(function_id.encode(), function), *_store_payload(upload)]
                ops += [put(keys[u], r) for u, r in lists.items()]
                ops.append(put(usage_key(function.id), FunctionUsage(function.id, 0)))
                await self._storage.commit(ops)

        await retrying(attempt)
        return function_id

    async def update(self, subject: Subject, upload: FunctionUpload) -> str:
        """Replace the function entirely; users' lists and the counter stay as they were [QUIRK].

        A changed payload replaces the old one, so a task invoked before the change and not yet
        run fails (its payload is gone) rather than run code its approvers did not see.
        """
        replacement = upload.function
        parsed = parse_id(replacement.external_id, _PREFIX, InvalidFunctionIdError)
        check_builtin(replacement)

        async def attempt() -> None:
            async with self._locks.hold(parsed.key):
                current, unchanged = await self._load_for_change(parsed)
                await self._require(subject, Action.FUNCTION_UPDATE, current)
                updated = replace(replacement, owner=subject.user_id, disabled=current.disabled)
                ops: list[Op] = [unchanged, put(parsed.key, updated)]
                if current.payload_sha256 != updated.payload_sha256 or current.inline_payload is not None:
                    ops += [*_drop_payload(current), *_store_payload(upload)]
                await self._storage.commit(ops)

        await retrying(attempt)
        return replacement.external_id

    async def set_requirements(self, subject: Subject, function_id: str, labels: list[str]) -> None:
        """Record the labels an execution service must offer to run the function (owner only)."""
        if len(labels) > _MAX_LABELS:
            raise InvalidArgumentError(f"too many labels: {len(labels)}, over the limit of {_MAX_LABELS}")
        bad = next((label for label in labels if not _LABEL.fullmatch(label)), None)
        if bad is not None:
            raise InvalidArgumentError(f"labels: {quoted(bad)} is not a label of 1 to 64 letters, digits, -, _ or .")
        parsed = parse_id(function_id, _PREFIX, InvalidFunctionIdError)
        function = await self._load(parsed)
        await self._require(subject, Action.FUNCTION_SET_REQUIREMENTS, function)
        key = requirements_key(parsed.uuid)
        await self._storage.commit([Put(key, json.dumps(sorted(set(labels))).encode()) if labels else Delete(key)])

    async def get(self, subject: Subject, function_id: str) -> tuple[Function, FunctionView]:
        """The function and how much of it the caller may see."""
        function = await self._load(parse_id(function_id, _PREFIX, InvalidFunctionIdError))
        full, redacted = await self._authorizer.decide(
            subject,
            [function_query(Action.FUNCTION_READ, function), function_query(Action.FUNCTION_READ_REDACTED, function)],
        )
        if full:
            return function, FunctionView.FULL
        if redacted:
            return function, FunctionView.REDACTED
        raise denied()

    async def payload(self, function: Function) -> bytes:
        """The function's payload (``get`` decides who may see it).

        Raises:
            InvalidFunctionIdError: the function changed or was deleted since it was read.
        """
        if function.inline_payload is not None:
            return function.inline_payload
        if function.payload_sha256 == EMPTY_PAYLOAD_SHA256:
            return b""
        value = await self._storage.get(payload_key(function.id, function.payload_sha256))
        if value is None:
            raise InvalidFunctionIdError()
        return value

    async def usage_stats(self, subject: Subject, function_id: str) -> tuple[int | None, int]:
        """``(quota, invocations so far)``; a quota of ``None`` is unlimited."""
        parsed = parse_id(function_id, _PREFIX, InvalidFunctionIdError)
        function_value, usage_value = await self._storage.read([parsed.key, usage_key(parsed.uuid)])
        function = decode(function_value, Function.from_json)
        if function is None:
            raise InvalidFunctionIdError()
        await self._require(subject, Action.FUNCTION_READ_USAGE, function)
        usage = decode(usage_value, FunctionUsage.from_json)
        if usage is None:
            raise InvalidFunctionIdError()
        return function.usage_quota, usage.use_numbers

    async def delete(self, subject: Subject, function_id: str) -> None:
        """Delete the function record only; lists and counter stay, tasks then fail to invoke."""
        parsed = parse_id(function_id, _PREFIX, InvalidFunctionIdError)

        async def attempt() -> None:
            async with self._locks.hold(parsed.key):
                function, unchanged = await self._load_for_change(parsed)
                await self._require(subject, Action.FUNCTION_DELETE, function)
                await self._storage.commit([unchanged, Delete(parsed.key), *_drop_payload(function)])

        await retrying(attempt)

    async def disable(self, subject: Subject, function_id: str) -> None:
        """Unlist the function for its owner and allow-listed users, clear its allowlist, mark it disabled.

        The default policy ignores the mark, so a public function stays usable [QUIRK].
        """
        parsed = parse_id(function_id, _PREFIX, InvalidFunctionIdError)

        async def attempt() -> None:
            async with self._locks.hold(parsed.key):
                function, unchanged = await self._load_for_change(parsed)
                await self._require(subject, Action.FUNCTION_DISABLE, function)
                users = [function.owner, *function.user_allowlist]
                keys = await self._user_keys(users)
                async with self._locks.hold(*keys.values()):
                    records, checks = await self._user_records(keys)
                    ops: list[Op] = [unchanged, *checks]
                    for user, record in records.items():
                        if record is not None:
                            ops.append(put(keys[user], _without(record, str(parsed))))
                    ops.append(put(parsed.key, replace(function, user_allowlist=(), disabled=True)))
                    await self._storage.commit(ops)

        await retrying(attempt)

    async def list_functions(self, subject: Subject, target_user_id: str) -> tuple[list[str], list[str]]:
        """``(registered, allowed)`` of ``target_user_id``; the allowed list is every function for
        callers the policy lets list all (admins, by default).

        A user without a record answers two empty lists, for admins too [QUIRK].
        """
        listed, all_allowed = await self._authorizer.decide(
            subject,
            [user_query(Action.FUNCTION_LIST, target_user_id), user_query(Action.FUNCTION_LIST_ALL, target_user_id)],
        )
        if not listed:
            raise denied()
        keys = await self._user_keys([target_user_id])
        record = decode(await self._storage.get(keys[target_user_id]), UserFunctions.from_json)
        if record is None:
            return [], []
        allowed = list(record.allowed_functions)
        if all_allowed:
            allowed = [key.decode() for key in await self._storage.keys_with_prefix(_PREFIX.encode())]
        return list(record.registered_functions), allowed


def _store_payload(upload: FunctionUpload) -> list[Op]:
    function = upload.function
    if function.payload_sha256 == EMPTY_PAYLOAD_SHA256:
        return []
    return [Put(payload_key(function.id, function.payload_sha256), upload.payload)]


def _drop_payload(function: Function) -> list[Op]:
    if function.inline_payload is not None or function.payload_sha256 == EMPTY_PAYLOAD_SHA256:
        return []
    return [Delete(payload_key(function.id, function.payload_sha256))]


def _merged(older: UserFunctions, newer: UserFunctions) -> UserFunctions:
    """``newer``'s lists with what only ``older`` holds appended."""
    return replace(
        newer,
        registered_functions=tuple(dict.fromkeys((*newer.registered_functions, *older.registered_functions))),
        allowed_functions=tuple(dict.fromkeys((*newer.allowed_functions, *older.allowed_functions))),
    )


def _without(record: UserFunctions, function_id: str) -> UserFunctions:
    return replace(
        record,
        registered_functions=tuple(f for f in record.registered_functions if f != function_id),
        allowed_functions=tuple(f for f in record.allowed_functions if f != function_id),
    )
