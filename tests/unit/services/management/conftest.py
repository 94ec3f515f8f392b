"""The management services over storage: both real engines, or an in-memory fake for the tests that
inspect or break storage in ways a real engine does not offer (every commit recorded, failing commits).

A test that takes ``storage`` runs against SQLite and PostgreSQL; one marked ``fake_storage`` runs
against :class:`FakeStorage` alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from policy_authorizer import PolicyAuthorizer, caller
from storage_engines import EngineStorage, background_store

from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import ConflictError
from cloister.model.files import FileCrypto, InputFile, OutputFile
from cloister.rpc.convert.functions import function_from_register_request
from cloister.services.management.audit import AuditLog
from cloister.services.management.files import FileService
from cloister.services.management.functions import FunctionService
from cloister.services.management.locks import KeyLocks
from cloister.services.management.tasks import TaskService
from cloister.storage.ops import Ack, Check, Delete, Enqueue, Op, Put, Versioned


class FakeStorage:
    """Same semantics as StorageClient over SQLiteStore: versions, atomic commits, watches."""

    def __init__(self) -> None:
        self.data: dict[bytes, Versioned] = {}
        self.queues: dict[bytes, list[bytes]] = {}
        self.version = 0
        self.commits: list[list[Op]] = []
        self.reads: list[list[bytes]] = []
        self.fail_commits = False
        self._waiters: dict[bytes, set[asyncio.Event]] = {}

    async def get(self, key: bytes) -> bytes | None:
        (value,) = await self.read([key])
        return None if value is None else value.value

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        assert len(keys) <= 1000
        await asyncio.sleep(0)  # a real read yields to other requests
        self.reads.append(list(keys))
        return [self.data.get(k) for k in keys]

    async def commit(self, ops: Sequence[Op]) -> dict[bytes, int]:
        await asyncio.sleep(0)
        if self.fail_commits:
            raise RuntimeError("storage is down")
        data, queues, version = dict(self.data), {k: list(v) for k, v in self.queues.items()}, self.version
        touched = set()
        for op in ops:
            if isinstance(op, Put):
                version += 1
                data[op.key] = Versioned(op.value, version)
                touched.add(op.key)
            elif isinstance(op, Delete):
                version += 1
                data.pop(op.key, None)
                touched.add(op.key)
            elif isinstance(op, Enqueue):
                queues.setdefault(op.queue, []).append(op.value)
            elif isinstance(op, Ack):
                pass
            elif isinstance(op, Check):
                current = data.get(op.key)
                if (0 if current is None else current.version) != op.version:
                    raise ConflictError(f"{op.key!r} changed since it was read")
            else:
                raise TypeError(op)
        self.data, self.queues, self.version = data, queues, version
        self.commits.append(list(ops))
        for key in touched:
            for event in self._waiters.get(key, ()):
                event.set()
        return {op.key: data[op.key].version for op in ops if isinstance(op, Put)}

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        return sorted(k for k in self.data if k.startswith(prefix + b"-"))

    async def watch(self, key: bytes, after_version: int, timeout: float) -> Versioned | None:
        current = self.data.get(key)
        changed = after_version > 0 if current is None else current.version > after_version
        if changed or timeout <= 0:
            return current
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._waiters[key].discard(event)
        return self.data.get(key)

    # --- test helpers ------------------------------------------------------------------

    def json(self, key: bytes | str) -> Any:
        key = key.encode() if isinstance(key, str) else key
        return json.loads(self.data[key].value)

    async def update_json(self, key: str, **fields: Any) -> None:
        """Rewrite fields of a stored record, as the scheduler would."""
        record = self.json(key)
        record.update(fields)
        await self.commit([Put(key.encode(), json.dumps(record).encode())])

    def queue_json(self, queue: bytes) -> list[Any]:
        return [json.loads(v) for v in self.queues.get(queue, [])]


STORAGES = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage" in metafunc.fixturenames:
        fake = metafunc.definition.get_closest_marker("fake_storage") is not None
        metafunc.parametrize("storage", ["fake"] if fake else STORAGES, indirect=True)


@dataclass
class Services:
    storage: FakeStorage
    authorizer: PolicyAuthorizer
    locks: KeyLocks
    functions: FunctionService
    files: FileService
    tasks: TaskService
    audit: AuditLog


@pytest.fixture
def storage(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[FakeStorage]:
    if request.param == "fake":
        yield FakeStorage()
        return
    with background_store(request, request.param, tmp_path) as background:
        yield EngineStorage(background)  # type: ignore[misc]


@pytest.fixture
def authorizer() -> PolicyAuthorizer:
    return PolicyAuthorizer()


def build_services(storage: FakeStorage, authorizer: PolicyAuthorizer) -> Services:
    """Management's services over ``storage``, with record locks of their own (as one process has)."""
    locks = KeyLocks()
    return Services(
        storage,
        authorizer,
        locks,
        FunctionService(storage, locks, authorizer),  # type: ignore[arg-type]
        FileService(storage, authorizer),  # type: ignore[arg-type]
        TaskService(storage, locks, authorizer),  # type: ignore[arg-type]
        AuditLog(storage, authorizer),  # type: ignore[arg-type]
    )


@pytest.fixture
def services(storage: FakeStorage, authorizer: PolicyAuthorizer) -> Services:
    return build_services(storage, authorizer)


CMAC = bytes(range(16))
KEY16 = bytes(16)


class Actions:
    """Short ways to build the records most tests start from."""

    def __init__(self, services: Services) -> None:
        self.s = services

    async def register_function(self, owner: str = "owner", **fields: Any) -> str:
        fields.setdefault("name", "builtin-echo")
        fields.setdefault("executor_type", "builtin")
        fields.setdefault("public", True)
        fields.setdefault("usage_quota", -1)
        request = fe_pb.RegisterFunctionRequest(**fields)
        return await self.s.functions.register(function_from_register_request(request, owner, uuid.uuid4()))

    async def register_input(self, owner: str, url: str = "https://example.com/in", cmac: bytes = CMAC) -> str:
        file = InputFile(url, cmac, FileCrypto("teaclave-file-128", KEY16), frozenset({owner}), uuid.uuid4())
        return await self.s.files.register(caller(owner), file)

    async def register_output(self, owner: str, url: str = "https://example.com/out") -> str:
        file = OutputFile(url, None, FileCrypto("teaclave-file-128", KEY16), frozenset({owner}), uuid.uuid4())
        return await self.s.files.register(caller(owner), file)


@pytest.fixture
def act(services: Services) -> Actions:
    return Actions(services)
