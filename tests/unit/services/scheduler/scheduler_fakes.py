"""Storage for the scheduler's tests: both real engines (:class:`SchedulerEngineStorage`) or an
in-memory stand-in for StorageClient (atomic commits, queues with seq/ack, waking watches) for the
tests that inspect or break it; and builders for the task and staged-task records the scheduler reads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from storage_engines import EngineStorage, background_store

from cloister.errors import ConflictError, UnavailableError
from cloister.model.files import FileCrypto, OutputFile
from cloister.model.ids import ExternalId
from cloister.model.tasks import StagedElement, StagedOutput, StagedTask, TaskState, TaskStatus
from cloister.storage.ops import Ack, Check, CheckValue, Delete, Enqueue, Op, Put, QueueItem, Versioned

STAGED = b"staged-task"
CANCEL = b"cancel_queue"


class FakeStorage:
    def __init__(self) -> None:
        self.kv: dict[bytes, Versioned] = {}
        self.queues: dict[bytes, dict[int, bytes]] = defaultdict(dict)
        self.commits: list[list[Op]] = []
        self.reads: list[bytes] = []
        self.fail_next_commits = 0
        self.lose_next_answers = 0
        """Commits applied whose answer is lost: the caller gets UNAVAILABLE (storage stalled as it answered)."""
        self._held: tuple[asyncio.Event, asyncio.Event] | None = None
        self._seq = 0
        self._version = 0
        self._events: dict[bytes, asyncio.Event] = {}

    # --- test helpers --------------------------------------------------------------------

    def enqueue(self, queue: bytes, value: bytes) -> int:
        self._seq += 1
        self.queues[queue][self._seq] = value
        self._wake(queue)
        return self._seq

    def put_json(self, key: bytes, value: object) -> None:
        self._version += 1
        self.kv[key] = Versioned(json.dumps(value).encode(), self._version)

    def json(self, key: bytes) -> object:
        return json.loads(self.kv[key].value)

    def task(self, task_id: uuid.UUID) -> TaskState:
        return TaskState.from_json(self.json(f"task-{task_id}".encode()))  # type: ignore[arg-type]

    def _wake(self, queue: bytes) -> None:
        event = self._events.pop(queue, None)
        if event is not None:
            event.set()

    # --- StorageClient -------------------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        self.reads.append(key)
        value = self.kv.get(key)
        return None if value is None else value.value

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        self.reads.extend(keys)
        return [self.kv.get(k) for k in keys]

    def hold_next_commit(self) -> tuple[asyncio.Event, asyncio.Event]:
        """(committing, release): the next commit sets ``committing``, then waits for ``release``."""
        self._held = (asyncio.Event(), asyncio.Event())
        return self._held

    async def commit(self, ops: Sequence[Op]) -> dict[bytes, int]:
        await asyncio.sleep(0)  # a real commit yields to the loop
        if self._held is not None:
            (committing, release), self._held = self._held, None
            committing.set()
            await release.wait()
        if self.fail_next_commits:
            self.fail_next_commits -= 1
            raise UnavailableError("storage is down")
        for op in ops:
            if isinstance(op, Check):
                current = self.kv.get(op.key)
                if (0 if current is None else current.version) != op.version:
                    raise ConflictError(f"{op.key!r} changed since it was read")
            elif isinstance(op, CheckValue):
                current = self.kv.get(op.key)
                if current is None or hashlib.sha256(current.value).digest() != op.sha256:
                    raise ConflictError(f"{op.key!r} is not the value it was decided on")
        self.commits.append(list(ops))
        woken = set()
        versions: dict[bytes, int] = {}
        for op in ops:
            if isinstance(op, Put):
                self._version += 1
                self.kv[op.key] = Versioned(op.value, self._version)
                versions[op.key] = self._version
            elif isinstance(op, Delete):
                self.kv.pop(op.key, None)
            elif isinstance(op, Enqueue):
                self._seq += 1
                self.queues[op.queue][self._seq] = op.value
                woken.add(op.queue)
            elif isinstance(op, Ack):
                self.queues[op.queue].pop(op.seq, None)
        for queue in woken:
            self._wake(queue)
        if self.lose_next_answers:
            self.lose_next_answers -= 1
            raise UnavailableError("storage stopped answering")
        return versions

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        return sorted(k for k in self.kv if k.startswith(prefix + b"-"))

    def _items(self, queue: bytes, after_seq: int, limit: int) -> list[QueueItem]:
        return [QueueItem(s, v) for s, v in sorted(self.queues[queue].items()) if s > after_seq][:limit]

    async def watch_queue(self, queue: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        items = self._items(queue, after_seq, limit)
        if items or timeout <= 0:
            return items
        event = self._events.setdefault(queue, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self._items(queue, after_seq, limit)


class SchedulerEngineStorage(EngineStorage):
    """A real engine with :class:`FakeStorage`'s record helpers."""

    def task(self, task_id: uuid.UUID) -> TaskState:
        return TaskState.from_json(self.json(f"task-{task_id}".encode()))


def make_task(
    storage: FakeStorage | SchedulerEngineStorage,
    *,
    status: TaskStatus = TaskStatus.STAGED,
    executor: str = "builtin",
    executor_type: str | None = None,
    outputs: Sequence[str] = (),
    enqueue: bool = True,
    with_record: bool = False,
) -> tuple[TaskState, StagedTask]:
    """Store a task (and its output records) and, with ``enqueue``, its staged element: a bare staged
    task as Teaclave's management enqueues it, or ``with_record`` Cloister's, carrying the record."""
    task_id = uuid.uuid4()
    assigned = {
        name: OutputFile(
            f"file:///tmp/{name}", None, FileCrypto("aes-gcm-128", b"k" * 16, b"i" * 12), frozenset({"u"}), uuid.uuid4()
        )
        for name in outputs
    }
    task = TaskState(
        task_id=task_id,
        creator="u",
        function_id=ExternalId("function", uuid.uuid4()),
        function_arguments={"message": "hi"},
        executor=executor,
        inputs_ownership={},
        outputs_ownership={name: frozenset({"u"}) for name in outputs},
        function_owner="u",
        participants=frozenset({"u"}),
        assigned_outputs=assigned,
        status=status,
    )
    storage.put_json(task.key, task.to_json())
    for output in assigned.values():
        storage.put_json(output.external_id.encode(), output.to_json())
    staged = StagedTask(
        task_id=task_id,
        function_id=task.function_id.uuid,
        user_id="u",
        executor=executor,
        executor_type=executor_type or {"builtin": "builtin", "mesapy": "python", "wamr": "wamr"}[executor],
        function_name="builtin-echo",
        function_arguments=task.function_arguments,
        function_payload=b"",
        input_data={},
        output_data={name: StagedOutput(o.url, o.crypto) for name, o in assigned.items()},
    )
    if enqueue and with_record:
        element = StagedElement(staged, stored=json.dumps(task.to_json()).encode())  # the bytes put_json stored
        storage.enqueue(STAGED, json.dumps(element.to_json()).encode())
    elif enqueue:
        storage.enqueue(STAGED, json.dumps(staged.to_json()).encode())
    return task, staged


def cancel(storage: FakeStorage | SchedulerEngineStorage, task: TaskState) -> int:
    """What management's CancelTask does for a Staged or Running task."""
    return storage.enqueue(CANCEL, json.dumps(task.to_json()).encode())


STORAGES = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``storage`` runs against each real engine, or the fake alone if marked ``fake_storage``.

    The scheduler's test modules import this hook and the fixture (:func:`engine_storage`) (a conftest here would be
    imported as ``conftest`` and shadow management's, whose tests import from it).
    """
    if "storage" in metafunc.fixturenames:
        fake = metafunc.definition.get_closest_marker("fake_storage") is not None
        metafunc.parametrize("storage", ["fake"] if fake else STORAGES, indirect=True)


@pytest.fixture(name="storage")
def engine_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeStorage | SchedulerEngineStorage]:
    if request.param == "fake":
        yield FakeStorage()
        return
    with background_store(request, request.param, tmp_path) as background:
        yield SchedulerEngineStorage(background)
