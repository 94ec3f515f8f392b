"""One active scheduler among replicas: a lease in storage, taken over when its holder goes silent.

The scheduler keeps executors, pending tasks and assignments in memory, so two active at once
would each hand out the same staged tasks. Replicas therefore start as standbys: only the
holder of the lease serves. The holder renews the lease's heartbeat record every third of the
lease; a standby takes over once it has seen no renewal for a whole lease, timed on its own
clock (no two hosts' clocks are compared). A scheduler restarted in place (same host, state
directory and instance) takes its own lease back at once. A takeover rewrites the lease record itself, and
every commit of the active scheduler is conditional on that record (:class:`FencedStorage`):
a holder that was paused, then wakes after a takeover, cannot change a task any more, and
leaves when its next renewal finds the lease gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloister.errors import CloisterError, ConflictError, InternalError
from cloister.rpc.retry import Backoff
from cloister.services.scheduler.records import Storage
from cloister.storage.ops import Check, Op, Put, QueueItem, Versioned, Written
from cloister.storage.records import encode_json

LEASE_KEY = b"scheduler-lease"
"""Who holds the lease, and since which takeover (its term): rewritten only by a takeover."""
BEAT_KEY = b"scheduler-lease-beat"
"""The holder's renewals: a standby watches this record's version change."""

logger = logging.getLogger(__name__)

_RETRY_LIMIT = 5.0


class LeadershipLostError(CloisterError):
    """Another scheduler took the lease over, or it could not be renewed in time: stop serving."""

    default_message = "this scheduler no longer holds the lease"


@dataclass(frozen=True)
class Lease:
    holder: str
    term: int

    def encode(self) -> bytes:
        return encode_json({"holder": self.holder, "term": self.term})

    @classmethod
    def decode(cls, raw: bytes) -> Lease:
        try:
            data = json.loads(raw)
            return cls(str(data["holder"]), int(data["term"]))
        except (ValueError, KeyError, TypeError):
            raise InternalError("the scheduler lease record is malformed") from None


class Leadership:
    """This scheduler's side of the lease: wait for it, then keep it or notice losing it."""

    def __init__(
        self,
        storage: Storage,
        holder: str,
        lease_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self.holder = holder
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._fence: Check | None = None
        self._beats = 0
        self._announced = False

    @property
    def fence(self) -> Check:
        """The condition every commit of the holder carries: the lease is still as this holder took it."""
        if self._fence is None:
            raise InternalError("the scheduler lease is not held")
        return self._fence

    async def acquire(self) -> Lease:
        """Wait until this scheduler holds the lease; the lease it holds."""
        backoff = Backoff(limit=_RETRY_LIMIT)
        while True:
            try:
                lease = await self._take_when_free()
            except ConflictError:
                continue  # another standby took it first, or the holder came back
            except CloisterError as exc:  # storage is down: the lease is neither held nor lost
                delay = backoff.next()
                logger.warning("cannot read the scheduler lease (%s); retrying in %.1f s", exc.message, delay)
                await asyncio.sleep(delay)
                continue
            if lease is not None:
                return lease

    async def _take_when_free(self) -> Lease | None:
        """Wait until the lease is free (never taken, this scheduler's own before a restart, or
        silent for a whole lease), then take it; None when another scheduler took it first."""
        while True:
            lease_value, beat_value = await self._storage.read([LEASE_KEY, BEAT_KEY])
            current = None if lease_value is None else Lease.decode(lease_value.value)
            if current is None or current.holder == self.holder:
                break
            if not self._announced:
                logger.info("standing by: the scheduler lease is held by %s", current.holder)
                self._announced = True
            if await self._silent_for_a_lease(beat_value):
                break
        mine = Lease(self.holder, 1 if current is None else current.term + 1)
        await self._storage.commit([Check.of(LEASE_KEY, lease_value), Put(LEASE_KEY, mine.encode())])
        (taken,) = await self._storage.read([LEASE_KEY])
        if taken is None or Lease.decode(taken.value) != mine:
            return None
        self._fence = Check(LEASE_KEY, taken.version)
        logger.info("this scheduler holds the lease (term %d)", mine.term)
        return mine

    async def _silent_for_a_lease(self, beat: Versioned | None) -> bool:
        """Whether the heartbeat record stays unchanged for a whole lease from now."""
        seen = 0 if beat is None else beat.version
        deadline = self._clock() + self._lease_seconds
        while (remaining := deadline - self._clock()) > 0:
            (now,) = await self._storage.read([BEAT_KEY])
            if (0 if now is None else now.version) != seen:
                return False
            await asyncio.sleep(min(remaining, self._lease_seconds / 6))
        return True

    async def keep(self) -> None:
        """Renew the lease for ever; raises :class:`LeadershipLostError` once another scheduler took it.

        A renewal storage does not take (it is down or out of reach) is tried again, however
        long that lasts: a standby can take over only through storage, and every commit of
        this holder is conditional on the lease, so nothing it does can clash with a successor's.
        """
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                await self.renew()
            except LeadershipLostError:
                raise
            except CloisterError as exc:
                logger.warning("could not renew the scheduler lease (%s); trying again", exc.message)

    async def renew(self) -> None:
        self._beats += 1
        try:
            await self._storage.commit([self.fence, Put(BEAT_KEY, encode_json({"beat": self._beats}))])
        except ConflictError:
            raise LeadershipLostError("another scheduler took the lease over") from None


class FencedStorage:
    """The scheduler's storage, with every commit conditional on the lease it holds."""

    def __init__(self, storage: Storage, leadership: Leadership) -> None:
        self._storage = storage
        self._leadership = leadership

    async def get(self, key: bytes) -> bytes | None:
        return await self._storage.get(key)

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        return await self._storage.read(keys)

    async def commit(self, ops: Sequence[Op]) -> Written:
        return await self._storage.commit([self._leadership.fence, *ops])

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        return await self._storage.keys_with_prefix(prefix)

    async def watch_queue(self, queue: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        return await self._storage.watch_queue(queue, after_seq, limit, timeout)
