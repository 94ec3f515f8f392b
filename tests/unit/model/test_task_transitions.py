"""The task state machine: every edge of the table and no other, each by its owner only, recorded in the record."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import replace

import pytest

from cloister.errors import IllegalTransitionError
from cloister.model.ids import ExternalId
from cloister.model.tasks import (
    APPROVAL,
    MAX_HISTORY,
    TRANSITIONS,
    Actor,
    TaskEvent,
    TaskOutputs,
    TaskResult,
    TaskState,
    TaskStatus,
    transition,
    with_event,
    with_waiting_reason,
)

S = TaskStatus
ENDED = (S.FINISHED, S.CANCELED, S.FAILED)
PENDING = (S.CREATED, S.DATA_ASSIGNED, S.APPROVED)

# The table as reference §8.8 and Cloister's rules (docs/tasks.md) state it, written out again
# here so that a change to TRANSITIONS shows up as a failing test, not as a silent new edge.
EXPECTED: dict[tuple[TaskStatus, TaskStatus], set[Actor]] = {
    **{(S.CREATED, to): {Actor.MANAGEMENT} for to in (S.DATA_ASSIGNED, S.APPROVED, S.STAGED, S.CANCELED)},
    **{(S.DATA_ASSIGNED, to): {Actor.MANAGEMENT} for to in (S.APPROVED, S.STAGED, S.CANCELED)},
    **{(S.APPROVED, to): {Actor.MANAGEMENT} for to in (S.STAGED, S.CANCELED)},
    (S.STAGED, S.RUNNING): {Actor.SCHEDULER, Actor.EXECUTOR},
    (S.STAGED, S.CANCELED): {Actor.SCHEDULER},
    (S.STAGED, S.FAILED): {Actor.SCHEDULER},
    (S.RUNNING, S.STAGED): {Actor.SCHEDULER},  # an unanswered hand-out, given back
    (S.RUNNING, S.FINISHED): {Actor.EXECUTOR},
    (S.RUNNING, S.FAILED): {Actor.SCHEDULER, Actor.EXECUTOR},
    (S.RUNNING, S.CANCELED): {Actor.SCHEDULER},
}


def task_at(status: TaskStatus, **changes: object) -> TaskState:
    task = TaskState(
        task_id=uuid.UUID(int=1),
        creator="alice",
        function_id=ExternalId("function", uuid.UUID(int=2)),
        function_arguments={},
        executor="builtin",
        inputs_ownership={},
        outputs_ownership={},
        function_owner="alice",
        participants=frozenset({"alice"}),
        status=status,
    )
    return replace(task, **changes)  # type: ignore[arg-type]


def result_for(to: TaskStatus) -> TaskResult | None:
    if to is S.FINISHED:
        return TaskResult.ok(TaskOutputs(b"done"))
    return TaskResult.err("why") if to.is_ended else None


def test_the_table_is_the_documented_one() -> None:
    assert {edge: set(actors) for edge, actors in TRANSITIONS.items()} == EXPECTED


def test_management_owns_a_task_up_to_staged_and_the_scheduler_after() -> None:
    for (source, to), actors in TRANSITIONS.items():
        if source in PENDING:
            assert actors == {Actor.MANAGEMENT}, (source, to)
        else:
            assert Actor.MANAGEMENT not in actors, (source, to)


@pytest.mark.parametrize(("source", "to"), list(itertools.product(TaskStatus, TaskStatus)))
def test_every_pair_is_allowed_exactly_as_the_table_says(source: TaskStatus, to: TaskStatus) -> None:
    task = task_at(source)
    for actor in Actor:
        if actor in EXPECTED.get((source, to), set()):
            moved = transition(task, to, by=actor, result=result_for(to), at=1234.5)
            assert (moved.status, moved.changed_by, moved.changed_at) == (to, actor, 1234.5)
        else:
            with pytest.raises(IllegalTransitionError):
                transition(task, to, by=actor, result=result_for(to))


@pytest.mark.parametrize("ended", ENDED)
def test_an_ended_task_has_no_way_out(ended: TaskStatus) -> None:
    task = task_at(ended, result=TaskResult.err("over"))
    for to, actor in itertools.product(TaskStatus, Actor):
        with pytest.raises(IllegalTransitionError):
            transition(task, to, by=actor, result=TaskResult.ok(TaskOutputs(b"late")))


def test_a_task_cannot_end_without_a_result() -> None:
    with pytest.raises(IllegalTransitionError, match="without a result"):
        transition(task_at(S.RUNNING), S.FINISHED, by=Actor.EXECUTOR)
    assert transition(task_at(S.RUNNING), S.FINISHED, by=Actor.EXECUTOR, result=TaskResult()).status is S.FINISHED


def test_the_error_names_the_edge_and_the_actor_but_no_data() -> None:
    with pytest.raises(IllegalTransitionError) as refused:
        transition(task_at(S.FINISHED), S.RUNNING, by=Actor.SCHEDULER)
    assert refused.value.message == f"illegal task transition: Finished -> Running ({task_at(S.FINISHED).external_id})"
    with pytest.raises(IllegalTransitionError, match=r"^management may not move a task from Staged to Running"):
        transition(task_at(S.STAGED), S.RUNNING, by=Actor.MANAGEMENT)


def test_only_a_staged_task_waits_and_any_transition_clears_the_reason() -> None:
    waiting = with_waiting_reason(task_at(S.STAGED), "waiting: no live execution service can run it")
    assert waiting.waiting_reason == "waiting: no live execution service can run it"
    assert waiting.result == TaskResult() and waiting.status is S.STAGED
    for to, actor, result in [
        (S.RUNNING, Actor.SCHEDULER, None),
        (S.CANCELED, Actor.SCHEDULER, TaskResult.err("Task Canceled by the user")),
        (S.FAILED, Actor.SCHEDULER, TaskResult.err("Runtime Error: Executor Timeout")),
    ]:
        assert transition(waiting, to, by=actor, result=result).waiting_reason is None
    for status in set(TaskStatus) - {S.STAGED}:
        with pytest.raises(IllegalTransitionError):
            with_waiting_reason(task_at(status), "waiting: nothing")


def test_who_and_when_travel_in_the_record_and_old_records_still_load() -> None:
    moved = transition(task_at(S.STAGED), S.RUNNING, by=Actor.SCHEDULER, at=1700000000.25)
    data = json.loads(json.dumps(moved.to_json()))
    assert (data["changed_by"], data["changed_at"]) == ("scheduler", 1700000000.25)
    assert TaskState.from_json(data) == moved
    waiting = json.loads(json.dumps(with_waiting_reason(task_at(S.STAGED), "waiting: x").to_json()))
    assert waiting["waiting_reason"] == "waiting: x" and waiting["result"] == "NotReady"
    assert TaskState.from_json(waiting).waiting_reason == "waiting: x"
    # A record from before these fields: none of the keys, and it loads with them unset.
    old = task_at(S.CREATED).to_json()
    assert not {"changed_by", "changed_at", "waiting_reason", "created_at"} & set(old)
    loaded = TaskState.from_json(old)
    assert (loaded.changed_by, loaded.changed_at, loaded.waiting_reason, loaded.created_at) == (None,) * 4
    created = replace(task_at(S.CREATED), created_at=1700000000.5)
    assert TaskState.from_json(json.loads(json.dumps(created.to_json()))).created_at == 1700000000.5


def test_an_earlier_records_waiting_result_becomes_its_waiting_reason() -> None:
    # Earlier versions kept the reason as a stand-in Err result on the Staged task.
    old = task_at(S.STAGED, result=TaskResult.err("waiting: no live execution service can run it")).to_json()
    loaded = TaskState.from_json(old)
    assert loaded.waiting_reason == "waiting: no live execution service can run it"
    assert loaded.result == TaskResult()
    # Only on a Staged task: an ended task's reason stays its result.
    failed = TaskState.from_json(task_at(S.FAILED, result=TaskResult.err("waiting: for godot")).to_json())
    assert failed.result.failure == "waiting: for godot" and failed.waiting_reason is None


def test_each_status_change_and_approval_is_kept_in_order_and_bounded() -> None:
    task = transition(task_at(S.CREATED), S.DATA_ASSIGNED, by=Actor.MANAGEMENT, at=10.0)
    task = with_event(task, TaskEvent(11.0, APPROVAL, "bob"))
    task = transition(task, S.STAGED, by=Actor.MANAGEMENT, at=12.0)
    expected = (TaskEvent(10.0, "DataAssigned"), TaskEvent(11.0, APPROVAL, "bob"), TaskEvent(12.0, "Staged"))
    assert task.history == expected
    assert TaskState.from_json(json.loads(json.dumps(task.to_json()))).history == expected
    assert "history" not in task_at(S.CREATED).to_json()  # a record without one keeps its old shape
    # A hand-out given back again and again: the first steps and the latest are kept, no more.
    for n in range(300):
        task = transition(task, S.RUNNING, by=Actor.SCHEDULER, at=100.0 + 2 * n)
        task = transition(task, S.STAGED, by=Actor.SCHEDULER, at=101.0 + 2 * n)
    assert len(task.history) == MAX_HISTORY
    assert task.history[:3] == expected and task.history[-1] == TaskEvent(699.0, "Staged")
