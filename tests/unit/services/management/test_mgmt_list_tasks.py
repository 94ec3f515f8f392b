"""ListTasks: the caller's tasks from the participant index, newest first, filtered, paged and
decided by the policy; the index written with the task, and built once for older tasks."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json

import pytest
from policy_authorizer import PolicyAuthorizer, caller

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import AccessDeniedError, InvalidArgumentError
from cloister.model.access import Action, Query, Subject
from cloister.model.roles import Role
from cloister.model.tasks import TaskStatus
from cloister.services.management import naming, task_index
from cloister.services.management.locks import KeyLocks
from cloister.services.management.servicer import CloisterManagementServicer
from cloister.services.management.tasks import TaskService
from cloister.storage.ops import Check, Delete, Put

ORG1 = Role.parse("DataOwner-org1")
S = TaskStatus
OUT = [fe_pb.FunctionOutput(name="out", optional=True)]


class Context:
    """The metadata the frontend forwards."""

    def __init__(self, user_id: str) -> None:
        self._metadata = [("id", user_id)]

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self._metadata


class Clock:
    """Creation times one second apart, so "newest first" has one right answer."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1_700_000_000)

    def __call__(self) -> float:
        return float(next(self._ticks))


class Denying(PolicyAuthorizer):
    """The packaged policy, except that ``action`` is denied on the tasks in ``task_ids``."""

    def __init__(self, action: Action, task_ids: set[str]) -> None:
        super().__init__()
        self.action, self.task_ids = action, task_ids
        self.batches: list[int] = []

    async def decide(self, subject: Subject, queries: list[Query]) -> list[bool]:  # type: ignore[override]
        self.batches.append(len(queries))
        allowed = await super().decide(subject, queries)
        return [
            a and not (q.action == self.action and q.resource_id in self.task_ids)
            for q, a in zip(queries, allowed, strict=True)
        ]


@pytest.fixture
def tasks(storage, authorizer) -> TaskService:
    return TaskService(storage, KeyLocks(), authorizer, clock=Clock())


async def create(tasks: TaskService, fid: str, creator: str = "alice", outputs: list[str] | None = None) -> str:
    """A task of ``creator``'s; with ``outputs``, those users own its output ``out``."""
    outputs_ownership = {"out": frozenset(outputs)} if outputs else {}
    return await tasks.create(caller(creator, ORG1), fid, "{}", "builtin", {}, outputs_ownership)


async def listed(tasks: TaskService, user: str, **options) -> list[str]:
    """Every task id ``user`` lists, page after page."""
    options = {"statuses": frozenset(), "awaiting_approval": False, "page_size": 100, **options}
    ids, after = [], None
    while True:
        page, more = await tasks.list_tasks(caller(user), after=after, **options)
        ids += [task.external_id for _, task in page]
        if not more:
            return ids
        after = page[-1][0]


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_index_is_written_in_the_commit_that_creates_the_task(services, act, storage, tasks):
    async def go():
        fid = await act.register_function("fo", outputs=OUT)
        tid = await create(tasks, fid, outputs=["bob", "alice-x"])
        (commit,) = storage.commits[-1:]
        function_check, task_put, *entries = commit  # created on the function as it is
        assert function_check == Check(fid.encode(), storage.data[fid.encode()].version)
        assert task_put == Put(tid.encode(), task_put.value)
        assert json.loads(task_put.value)["created_at"] == 1_700_000_000.0
        at = f"{10**16 - 1 - 1_700_000_000 * 10**6:016d}-{tid.split('-', 1)[1].replace('-', '')}"
        key = storage.data[naming.KEY_KEY].value
        assert sorted(e.key.decode() for e in entries) == sorted(
            f"{task_index.user_prefix(key, user).decode()}-{at}" for user in ("alice", "alice-x", "bob")
        )
        for entry in entries:  # the database never names a participant
            assert not any(name in entry.key for name in (b"alice", b"bob", b"alice".hex().encode()))
        assert task_index.task_key(at.encode()) == tid.encode()
        # "alice" is a prefix of "alice-x", but not of its index prefix
        assert await listed(tasks, "alice") == [tid] == await listed(tasks, "alice-x")

    asyncio.run(go())


def test_a_caller_lists_the_tasks_they_take_part_in_newest_first(services, act, tasks, authorizer):
    async def go():
        public = await act.register_function("fo", outputs=OUT)
        private = await act.register_function("fo", public=False, user_allowlist=["org1"])
        first = await create(tasks, public)
        shared = await create(tasks, public, outputs=["bob"])
        with_owner = await tasks.create(caller("carol", ORG1), private, "{}", "builtin", {}, {})
        assert await listed(tasks, "alice") == [shared, first]
        assert await listed(tasks, "bob") == [shared]
        assert await listed(tasks, "fo") == [with_owner]  # the owner of a private function takes part
        authorizer.asked.clear()
        assert await listed(tasks, "zed") == []
        assert authorizer.asked == []  # nothing of anyone else's was even asked about
        assert await listed(tasks, "alice", page_size=1000) == [shared, first]

    asyncio.run(go())


def test_status_filter_reads_the_task_as_stored_now(services, act, storage, tasks):
    async def go():
        fid = await act.register_function("fo")
        created, staged, finished = [await create(tasks, fid) for _ in range(3)]
        await tasks.invoke(caller("alice"), staged)
        await storage.update_json(finished, status="Finished", result={"Err": {"reason": "x"}})
        assert await listed(tasks, "alice", statuses=frozenset({S.CREATED})) == [created]
        assert await listed(tasks, "alice", statuses=frozenset({S.STAGED, S.FINISHED})) == [finished, staged]
        assert await listed(tasks, "alice", statuses=frozenset({S.RUNNING})) == []

    asyncio.run(go())


def test_approval_inbox_lists_a_task_until_the_caller_approves(services, act, tasks):
    async def go():
        fid = await act.register_function("fo", outputs=OUT)
        two_party = await create(tasks, fid, outputs=["bob"])
        await create(tasks, fid, outputs=["alice"])  # alice alone: nobody's approval is awaited
        inbox = {"awaiting_approval": True}
        assert await listed(tasks, "bob", **inbox) == [two_party] == await listed(tasks, "alice", **inbox)
        out = await act.register_output("bob")
        await tasks.assign_data(caller("bob"), two_party, [], [("out", out)])
        assert await listed(tasks, "bob", **inbox) == [two_party]
        await tasks.approve(caller("bob"), two_party)
        assert await listed(tasks, "bob", **inbox) == []
        assert await listed(tasks, "alice", **inbox) == [two_party]
        await tasks.approve(caller("alice"), two_party)
        assert await listed(tasks, "alice", **inbox) == []
        assert await listed(tasks, "bob") == [two_party]  # still listed without the filter

    asyncio.run(go())


def test_pages_cover_every_task_once_in_order(services, act, tasks):
    async def go():
        fid = await act.register_function("fo")
        created = [await create(tasks, fid) for _ in range(7)]
        pages, after = [], None
        while True:
            page, more = await tasks.list_tasks(
                caller("alice"), statuses=frozenset(), awaiting_approval=False, page_size=3, after=after
            )
            pages.append([task.external_id for _, task in page])
            if not more:
                break
            after = page[-1][0]
        assert pages == [created[6:3:-1], created[3:0:-1], created[:1]]
        # A page that ends exactly at the last task says there is no more.
        page, more = await tasks.list_tasks(
            caller("alice"), statuses=frozenset(), awaiting_approval=False, page_size=7, after=None
        )
        assert len(page) == 7 and not more

    asyncio.run(go())


def test_only_tasks_the_policy_allows_are_listed(services, act, storage):
    async def go():
        fid = await act.register_function("fo", outputs=OUT)
        setup = TaskService(storage, KeyLocks(), PolicyAuthorizer(), clock=Clock())
        hidden, shown = await create(setup, fid, outputs=["bob"]), await create(setup, fid, outputs=["bob"])
        for action in (Action.TASK_READ, Action.TASK_APPROVE):
            denying = Denying(action, {hidden})
            tasks = TaskService(storage, KeyLocks(), denying)
            assert await listed(tasks, "bob", awaiting_approval=True) == [shown]
            assert denying.batches == [4]  # read and approve for both tasks, in one round trip
        denying = Denying(Action.TASK_READ, {hidden})
        tasks = TaskService(storage, KeyLocks(), denying)
        assert await listed(tasks, "bob") == [shown]
        assert denying.asked == [("bob", "task.read")] * 2

    asyncio.run(go())


def test_a_page_asks_the_policy_in_batches_and_stops_when_full(services, act, storage, monkeypatch):
    async def go():
        monkeypatch.setattr("cloister.services.management.tasks._LIST_CHUNK", 4)
        fid = await act.register_function("fo")
        authorizer = Denying(Action.TASK_READ, set())
        tasks = TaskService(storage, KeyLocks(), authorizer, clock=Clock())
        for _ in range(10):
            await create(tasks, fid)
        authorizer.batches.clear()
        page, more = await tasks.list_tasks(
            caller("alice"), statuses=frozenset(), awaiting_approval=False, page_size=5, after=None
        )
        assert len(page) == 5 and more
        assert authorizer.batches == [4, 4]  # two chunks were enough; the third was never read

    asyncio.run(go())


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_tasks_stored_before_the_index_are_indexed_once(services, act, storage, tasks):
    async def go():
        fid = await act.register_function("fo", outputs=OUT)
        old = [await create(tasks, fid, outputs=["bob"]) for _ in range(3)]
        # As an earlier version stored them: no creation time, no index, no marker.
        index_keys = [k for k in storage.data if k.startswith(b"tasks-")]
        await storage.commit([Delete(k) for k in index_keys])
        for changed_at, tid in zip((30.0, 10.0, 20.0), old, strict=True):
            record = storage.json(tid)
            del record["created_at"]
            record["changed_at"] = changed_at
            await storage.commit([Put(tid.encode(), json.dumps(record).encode())])

        fresh = TaskService(storage, KeyLocks(), PolicyAuthorizer(), clock=Clock())
        assert await listed(fresh, "bob") == [old[0], old[2], old[1]]  # by their last change
        assert storage.json(task_index.MARKER_KEY) == {"version": 2}
        newer = await create(fresh, fid, outputs=["bob"])
        restarted = TaskService(storage, KeyLocks(), PolicyAuthorizer())
        commits = len(storage.commits)
        assert await listed(restarted, "bob") == [newer, old[0], old[2], old[1]]
        assert len(storage.commits) == commits  # the marker is there: no second backfill

    asyncio.run(go())


def test_servicer_pages_with_opaque_tokens(services, act, storage):
    async def go():
        fid = await act.register_function("fo")
        tasks = TaskService(storage, KeyLocks(), PolicyAuthorizer(), clock=Clock())
        created = [await create(tasks, fid) for _ in range(3)]
        servicer = CloisterManagementServicer(tasks, services.functions, services.audit)
        alice = Context("alice")
        first = await servicer.ListTasks(cpb.ListTasksRequest(page_size=2), alice)
        assert [t.task_id for t in first.tasks] == created[:0:-1] and first.next_page_token
        second = await servicer.ListTasks(cpb.ListTasksRequest(page_size=2, page_token=first.next_page_token), alice)
        assert [t.task_id for t in second.tasks] == created[:1] and second.next_page_token == ""
        default = await servicer.ListTasks(cpb.ListTasksRequest(), alice)
        assert len(default.tasks) == 3 and default.tasks[0].status == S.CREATED
        staged = await servicer.ListTasks(cpb.ListTasksRequest(statuses=[S.STAGED]), alice)
        assert list(staged.tasks) == []
        with pytest.raises(InvalidArgumentError, match=r"page_size 1001 is too large: at most 1000"):
            await servicer.ListTasks(cpb.ListTasksRequest(page_size=1001), alice)
        assert len((await servicer.ListTasks(cpb.ListTasksRequest(page_size=1000), alice)).tasks) == 3
        bad_tokens = [
            "garbage!",
            "x",
            base64.urlsafe_b64encode(b"1234-" + b"a" * 32).decode(),
            base64.urlsafe_b64encode(b"0" * 16 + b"-" + b"A" * 32).decode(),
            first.next_page_token + "AA",
            "é",
        ]
        for token in bad_tokens:
            with pytest.raises(InvalidArgumentError, match="page_token is not valid"):
                await servicer.ListTasks(cpb.ListTasksRequest(page_token=token), alice)
        with pytest.raises(InvalidArgumentError, match=r"statuses: 7 is not a task status; valid: 0 \(CREATED\)"):
            await servicer.ListTasks(cpb.ListTasksRequest(statuses=[7]), alice)

    asyncio.run(go())


def test_a_page_stops_before_it_outgrows_a_public_message(services, act, storage):
    async def go():
        big = [fe_pb.FunctionArgument(key="a", allow_overwrite=True)]
        fid = await act.register_function("fo", arguments=big)
        tasks = TaskService(storage, KeyLocks(), PolicyAuthorizer(), clock=Clock())
        arguments = json.dumps({"a": "x" * (1024 * 1024)})
        created = [await tasks.create(caller("alice", ORG1), fid, arguments, "builtin", {}, {}) for _ in range(4)]
        servicer = CloisterManagementServicer(tasks, services.functions, services.audit)
        seen, token = [], ""
        while True:
            page = await servicer.ListTasks(cpb.ListTasksRequest(page_token=token), Context("alice"))
            assert page.ByteSize() < 4 * 1024 * 1024
            seen += [t.task_id for t in page.tasks]
            token = page.next_page_token
            if not token:
                break
        assert seen == created[::-1]

    asyncio.run(go())


def test_only_the_creator_learns_what_an_invocation_lacks(services, act, tasks):
    async def go():
        fid = await act.register_function("fo", outputs=OUT)
        tid = await create(tasks, fid, outputs=["bob"])
        for stranger in ("bob", "zed"):
            with pytest.raises(AccessDeniedError) as denied:
                await tasks.invoke(caller(stranger), tid)
            assert denied.value.message == "permission denied"

    asyncio.run(go())


def test_the_first_index_which_named_users_in_hex_is_replaced(services, act, storage, tasks):
    async def go():
        fid = await act.register_function("fo", outputs=OUT)
        tid = await create(tasks, fid, outputs=["bob"])
        # As the first version of the index stored it: users in hex, marker version 1.
        index_keys = await storage.keys_with_prefix(task_index.INDEX_PREFIX)
        at = index_keys[0].rsplit(b"-", 2)[-2] + b"-" + index_keys[0].rsplit(b"-", 1)[-1]
        clear = [b"tasks-of-" + user.encode().hex().encode() + b"-" + at for user in ("alice", "bob")]
        clear.append(task_index.MARKER_KEY)
        await storage.commit([*(Delete(k) for k in index_keys), *(Put(k, b'{"version":1}') for k in clear)])
        fresh = TaskService(storage, KeyLocks(), PolicyAuthorizer(), clock=Clock())
        assert await listed(fresh, "bob") == [tid]
        assert await storage.keys_with_prefix(task_index.CLEAR_INDEX_PREFIX) == []
        assert storage.json(task_index.MARKER_KEY) == {"version": 2}

    asyncio.run(go())
