"""Scheduler replicas: one holds the lease, a standby takes over only after a silent lease, and a
holder that lost the lease can no longer change anything."""

from __future__ import annotations

import asyncio

import pytest
from scheduler_fakes import FakeStorage

from cloister.errors import ConflictError
from cloister.services.scheduler.leadership import (
    BEAT_KEY,
    LEASE_KEY,
    FencedStorage,
    Leadership,
    LeadershipLostError,
    Lease,
)
from cloister.storage.ops import Put

LEASE = 0.3


def lease_of(storage: FakeStorage) -> Lease:
    return Lease.decode(storage.kv[LEASE_KEY].value)


def test_the_first_scheduler_holds_the_lease_and_a_standby_waits_while_it_renews():
    async def go():
        storage = FakeStorage()
        first, second = Leadership(storage, "a", LEASE), Leadership(storage, "b", LEASE)
        assert await first.acquire() == Lease("a", 1)
        keeping = asyncio.create_task(first.keep())
        standby = asyncio.create_task(second.acquire())
        await asyncio.sleep(LEASE * 5)
        assert not standby.done()  # renewed every third of a lease: never silent for a whole one
        assert lease_of(storage) == Lease("a", 1)
        keeping.cancel()  # the holder stops (killed, say)
        assert await asyncio.wait_for(standby, LEASE * 5) == Lease("b", 2)
        assert lease_of(storage) == Lease("b", 2)

    asyncio.run(go())


def test_a_holder_that_lost_the_lease_is_fenced_and_notices():
    async def go():
        storage = FakeStorage()
        old, new = Leadership(storage, "a", LEASE), Leadership(storage, "b", LEASE)
        await old.acquire()
        fenced = FencedStorage(storage, old)
        await fenced.commit([Put(b"task-x", b"1")])
        await new.acquire()  # "a" paused for longer than a lease
        with pytest.raises(ConflictError):
            await fenced.commit([Put(b"task-x", b"2")])
        assert storage.kv[b"task-x"].value == b"1"
        with pytest.raises(LeadershipLostError, match="took the lease over"):
            await old.renew()
        await FencedStorage(storage, new).commit([Put(b"task-x", b"3")])
        assert storage.kv[b"task-x"].value == b"3"

    asyncio.run(go())


def test_a_scheduler_restarted_in_place_takes_its_lease_back_at_once():
    async def go():
        storage = FakeStorage()
        earlier = Leadership(storage, "host:/state:scheduler", 60.0)
        await earlier.acquire()
        await earlier.renew()
        again = Leadership(storage, "host:/state:scheduler", 60.0)
        assert await asyncio.wait_for(again.acquire(), 5) == Lease("host:/state:scheduler", 2)
        with pytest.raises(LeadershipLostError):  # the earlier incarnation, were it only paused
            await earlier.renew()

    asyncio.run(go())


def test_a_holder_that_cannot_reach_storage_keeps_the_lease():
    """Nobody can take the lease over without storage, so an outage is no reason to step down."""

    async def go():
        storage = FakeStorage()
        holder = Leadership(storage, "a", LEASE)
        await holder.acquire()
        storage.fail_next_commits = 1_000
        keeping = asyncio.create_task(holder.keep())
        await asyncio.sleep(LEASE * 3)
        assert not keeping.done()
        storage.fail_next_commits = 0
        await asyncio.sleep(LEASE)
        assert BEAT_KEY in storage.kv  # renewing again
        assert not keeping.done()
        keeping.cancel()

    asyncio.run(go())


def test_two_standbys_take_over_one_at_a_time():
    async def go():
        storage = FakeStorage()
        await Leadership(storage, "gone", LEASE).acquire()
        tasks = {asyncio.create_task(Leadership(storage, name, LEASE).acquire()): name for name in ("b", "c")}
        done, pending = await asyncio.wait(tasks, timeout=LEASE * 5, return_when=asyncio.FIRST_COMPLETED)
        (won,) = done
        assert won.result() == Lease(tasks[won], 2)
        await asyncio.sleep(LEASE / 2)
        assert all(not task.done() for task in pending)  # its term is new: the other waits a lease again
        assert lease_of(storage) == won.result()
        for task in pending:
            task.cancel()

    asyncio.run(go())
