"""What one access decision costs: the packaged casbin policy against the same rule written in Python.

Management asks the access control service before every action (about five decisions per
task), so a decision's cost is on the task path. The baseline is the rule hard-coded, as
Teaclave's management had it; both run in this process, over the same attributes.

Usage: python -m benchmarks.access_decisions [--decisions 20000]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

from cloister.model.access import Action, Query, Subject, task_query
from cloister.model.ids import ExternalId
from cloister.model.roles import Role
from cloister.model.tasks import TaskState
from cloister.services.access_control.policy import AccessPolicy


def _per_call(run: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        run()
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    args = parser.parse_args()
    policy = AccessPolicy()
    subject = Subject("alice", Role.parse("DataOwner-org1"))
    task = TaskState(
        task_id=uuid.uuid4(),
        creator="alice",
        function_id=ExternalId.parse(f"function-{uuid.uuid4()}"),
        function_arguments={},
        executor="builtin",
        inputs_ownership={},
        outputs_ownership={},
        function_owner="bob",
        participants=frozenset({"alice", "bob"}),
        approved_users=frozenset({"alice", "bob"}),
    )
    cases: list[tuple[Query, Callable[[], bool]]] = [
        (task_query(Action.TASK_READ, task), lambda: subject.user_id in task.participants),
        (
            task_query(Action.TASK_STAGE, task),
            lambda: len(task.participants) == 1 or task.approved_users >= task.participants,
        ),
        (task_query(Action.TASK_CANCEL, task), lambda: subject.role.is_admin or task.creator == subject.user_id),
    ]
    for query, hard_coded in cases:
        assert policy.allows(subject, query) == hard_coded()
        baseline = _per_call(hard_coded, args.decisions)
        decided = _per_call(lambda query=query: policy.allows(subject, query), args.decisions)
        print(
            f"{query.action:<12} hard-coded {baseline * 1e6:7.2f} µs (baseline)   "
            f"policy {decided * 1e6:7.2f} µs = {decided / baseline:6.1f} x baseline"
        )


if __name__ == "__main__":
    main()
