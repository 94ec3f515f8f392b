"""Spooled audit entries reach management's log exactly once: through lost answers, failures and restarts."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from policy_authorizer import PolicyAuthorizer

from cloister._proto import teaclave_common_pb2 as cpb
from cloister._proto import teaclave_management_service_pb2 as mpb
from cloister.errors import MalformedRequestError, UnavailableError
from cloister.model.audit import verify_chain
from cloister.rpc import retry
from cloister.rpc.audit_trail import FIRST_SEQ_KEY, SOURCE_KEY, AuditTrail, spool_position
from cloister.services.management.audit import HEAD_KEY, delivered_key, entry_seq, load_head
from cloister.services.management.service import create_servicers

IP = ipaddress.IPv6Address("::127.0.0.1").packed


class Context:
    def __init__(self, metadata: Any) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> Any:
        return self._metadata


class Management:
    """Stands in for the Peer to management: calls the real servicer, and can fail as a network does."""

    def __init__(self, storage: Any) -> None:
        self.servicer, _ = create_servicers(storage, PolicyAuthorizer())
        self.down = False
        self.lose_answers = 0
        self.delay = 0.0
        """Seconds each call takes, as a busy management's would."""
        self.calls: list[tuple[tuple[str, str], ...]] = []

    async def call(self, stub: type, method: str, request: Any, *, metadata: Any = None, timeout: Any = None) -> Any:
        assert method == "SaveLogs"
        self.calls.append(metadata)
        if self.down:
            raise UnavailableError("the management service is unavailable; try again shortly")
        await asyncio.sleep(self.delay)
        answer = await self.servicer.SaveLogs(request, Context(metadata))
        if self.lose_answers:  # stored, but the answer never arrives (management killed right after its commit)
            self.lose_answers -= 1
            raise UnavailableError("the management service is unavailable; try again shortly")
        return answer

    async def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _short_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry.Backoff, "next", lambda self: 0.01)
    monkeypatch.setattr("cloister.rpc.audit_trail._SHIP_PAUSE", 0.01)


def _stored(storage: Any) -> list[str]:
    """The stored messages, in chain order, once the chain verifies."""
    if HEAD_KEY not in storage.data:
        return []
    keys = sorted(k for k in storage.data if k.startswith(b"audit-"))
    records = [(entry_seq(k), storage.data[k].value) for k in keys]
    verify_chain(records, load_head(storage.data[HEAD_KEY].value))
    return [json.loads(raw)["entry"]["message"] for _, raw in records]


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_entries_are_stored_once_when_the_answer_to_saving_them_is_lost(storage: Any, tmp_path: Path) -> None:
    management = Management(storage)

    async def go() -> None:
        trail = AuditTrail(management, tmp_path, "frontend")  # type: ignore[arg-type]
        management.lose_answers = 1
        trail.start()
        await asyncio.gather(*(trail.record(IP, "u", f"call {n}", True) for n in range(5)))
        await _until(lambda: len(_stored(storage)) >= 5 and not management.lose_answers and len(management.calls) >= 2)
        await trail.stop()

    asyncio.run(go())
    assert _stored(storage) == [f"call {n}" for n in range(5)]
    first = management.calls[0]
    assert first is not None
    spool = dict(first)[SOURCE_KEY]
    assert spool == f"frontend-{(tmp_path / 'id').read_text()}"  # this spool's own numbers, apart from any other's
    assert json.loads(storage.data[delivered_key(spool)].value)["seq"] >= int(dict(first)[FIRST_SEQ_KEY]) + 4


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_entries_spooled_while_management_is_down_are_shipped_after_a_restart(storage: Any, tmp_path: Path) -> None:
    management = Management(storage)
    management.down = True

    async def before_crash() -> None:
        trail = AuditTrail(management, tmp_path, "authentication")  # type: ignore[arg-type]
        trail.start()
        for n in range(3):
            await trail.record(IP, "u", f"answered {n}", True)  # each returns: its call may be answered
        # killed: no stop(), nothing shipped

    asyncio.run(before_crash())
    assert _stored(storage) == []
    management.down = False

    async def after_restart() -> None:
        trail = AuditTrail(management, tmp_path, "authentication")  # type: ignore[arg-type]
        trail.start()
        await trail.record(IP, "u", "after restart", True)
        await _until(lambda: len(_stored(storage)) >= 4)
        await trail.stop()

    asyncio.run(after_restart())
    assert _stored(storage) == ["answered 0", "answered 1", "answered 2", "after restart"]
    assert not [p for p in tmp_path.glob("*.spool") if p.read_bytes().strip(b"\0")]  # acknowledged, so deleted


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_a_steady_stream_of_entries_is_shipped_a_batch_per_pause(
    storage: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries that keep coming are not shipped as they come, each to its own SaveLogs: one batch
    holds what gathered during a pause, and everything arrives, in order."""
    monkeypatch.setattr("cloister.rpc.audit_trail._SHIP_PAUSE", 0.2)
    management = Management(storage)
    management.delay = 0.03  # entries keep coming while each batch is saved

    async def go() -> float:
        trail = AuditTrail(management, tmp_path, "frontend")  # type: ignore[arg-type]
        trail.start()
        started = asyncio.get_running_loop().time()
        for n in range(60):
            await trail.record(IP, "u", f"call {n}", True)
            await asyncio.sleep(0.005)
        elapsed = asyncio.get_running_loop().time() - started
        await _until(lambda: len(_stored(storage)) >= 60)
        await trail.stop()
        return elapsed

    elapsed = asyncio.run(go())
    assert _stored(storage) == [f"call {n}" for n in range(60)]
    assert len(management.calls) <= elapsed / 0.2 + 3, f"{len(management.calls)} batches in {elapsed:.2f} s"


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_a_batch_delivered_twice_is_stored_once_and_others_sources_are_apart(storage: Any) -> None:
    servicer, _ = create_servicers(storage, PolicyAuthorizer())

    def batch(*messages: str) -> Any:
        return mpb.SaveLogsRequest(logs=[cpb.Entry(ip=IP, message=m, result=True) for m in messages])

    def meta(source: str, first: int) -> Context:
        return Context(((SOURCE_KEY, source), (FIRST_SEQ_KEY, str(first))))

    async def go() -> None:
        await servicer.SaveLogs(batch("a1", "a2", "a3"), meta("frontend", 10))
        await servicer.SaveLogs(batch("a1", "a2", "a3", "a4"), meta("frontend", 10))  # resent, one more
        await servicer.SaveLogs(batch("b1"), meta("access_control", 10))  # same numbers, another spool
        await servicer.SaveLogs(batch("a3", "a4"), meta("frontend", 12))  # all delivered already
        await servicer.SaveLogs(batch("t"), Context(()))  # a Teaclave client names no source

    asyncio.run(go())
    assert _stored(storage) == ["a1", "a2", "a3", "a4", "b1", "t"]


@pytest.mark.fake_storage  # inspects the fake's records of commits and data, or fails its commits
def test_a_failed_commit_leaves_no_stale_chain_head(storage: Any) -> None:
    servicer, _ = create_servicers(storage, PolicyAuthorizer())

    async def go() -> None:
        request = mpb.SaveLogsRequest(logs=[cpb.Entry(ip=IP, message="x", result=True)])
        await servicer.SaveLogs(request, Context(((SOURCE_KEY, "frontend"), (FIRST_SEQ_KEY, "1"))))
        storage.fail_commits = True
        with pytest.raises(RuntimeError):
            await servicer.SaveLogs(request, Context(((SOURCE_KEY, "frontend"), (FIRST_SEQ_KEY, "2"))))
        storage.fail_commits = False
        # storage applied nothing; had it applied the commit, the marks it re-reads would say so
        await servicer.SaveLogs(request, Context(((SOURCE_KEY, "frontend"), (FIRST_SEQ_KEY, "2"))))

    asyncio.run(go())
    assert _stored(storage) == ["x", "x"]


@pytest.mark.parametrize(
    "metadata",
    [
        ((SOURCE_KEY, "frontend"),),
        ((FIRST_SEQ_KEY, "3"),),
        ((SOURCE_KEY, "front end"), (FIRST_SEQ_KEY, "3")),
        ((SOURCE_KEY, "frontend"), (FIRST_SEQ_KEY, "-3")),
        ((SOURCE_KEY, "frontend"), (FIRST_SEQ_KEY, "0")),
    ],
)
def test_malformed_spool_metadata_is_refused(metadata: Any) -> None:
    with pytest.raises(MalformedRequestError):
        spool_position(metadata)
    assert spool_position((("id", "x"),)) is None
