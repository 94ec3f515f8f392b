"""Management decides nothing itself: what the policy allows happens, what it denies does not.

The same operations run under a policy that allows everything and one that denies everything;
a check of management's own would show up as a refusal in the first or a success in the second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from conftest import Actions, Services
from policy_authorizer import caller

from cloister.errors import AccessDeniedError
from cloister.model.access import Query, Subject
from cloister.services.management.audit import AuditLog
from cloister.services.management.files import FileService
from cloister.services.management.functions import FunctionService
from cloister.services.management.locks import KeyLocks
from cloister.services.management.tasks import TaskService

MALLORY = caller("mallory", "DataOwner-nowhere")


class Answering:
    """A policy with one answer for everything; it remembers what it was asked."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def decide(self, subject: Subject, queries: Sequence[Query]) -> list[bool]:
        self.asked += [query.action for query in queries]
        return [self.answer] * len(queries)


async def _alices_world(act: Actions, services: Services) -> dict[str, str]:
    """A private function, files and a task that belong to alice and owner, built as they would."""
    answer = services.authorizer.answer
    services.authorizer.answer = True
    ids = {
        "function": await act.register_function("owner", public=False, user_allowlist=["alice"]),
        "input": await act.register_input("alice"),
        "output": await act.register_output("alice"),
    }
    ids["task"] = await services.tasks.create(
        caller("alice", "DataOwner-org1"), ids["function"], "{}", "builtin", {}, {}
    )
    services.authorizer.answer = answer
    services.authorizer.asked.clear()
    return ids


OPERATIONS = {
    "function.read": lambda s, ids: s.functions.get(MALLORY, ids["function"]),
    "function.read_usage": lambda s, ids: s.functions.usage_stats(MALLORY, ids["function"]),
    "function.list": lambda s, ids: s.functions.list_functions(MALLORY, "owner"),
    "function.set_requirements": lambda s, ids: s.functions.set_requirements(MALLORY, ids["function"], ["gpu"]),
    "function.disable": lambda s, ids: s.functions.disable(MALLORY, ids["function"]),
    "file.read": lambda s, ids: s.files.get_input(MALLORY, ids["input"]),
    "file.update": lambda s, ids: s.files.update_output(MALLORY, ids["output"], "https://example.com/moved"),
    "file.register_fusion": lambda s, ids: s.files.register_fusion_output(MALLORY, ["alice"]),
    "task.read": lambda s, ids: s.tasks.get(MALLORY, ids["task"]),
    "task.create": lambda s, ids: s.tasks.create(MALLORY, ids["function"], "{}", "builtin", {}, {}),
    "task.approve": lambda s, ids: s.tasks.approve(MALLORY, ids["task"]),
    "task.invoke": lambda s, ids: s.tasks.invoke(MALLORY, ids["task"]),
    "task.cancel": lambda s, ids: s.tasks.cancel(MALLORY, ids["task"]),
    "audit.query": lambda s, ids: s.audit.query(MALLORY, "", 10),
    "function.delete": lambda s, ids: s.functions.delete(MALLORY, ids["function"]),
}


@pytest.mark.parametrize("answer", [True, False], ids=["allow-all", "deny-all"])
def test_the_policys_answer_is_the_outcome(storage, answer: bool) -> None:
    policy = Answering(answer)
    locks = KeyLocks()
    services = Services(
        storage,
        policy,  # type: ignore[arg-type]
        locks,
        FunctionService(storage, locks, policy),
        FileService(storage, policy),
        TaskService(storage, locks, policy),
        AuditLog(storage, policy),
    )

    async def go() -> None:
        ids = await _alices_world(Actions(services), services)
        for action, operation in OPERATIONS.items():
            if answer:
                await operation(services, ids)
            else:
                with pytest.raises(AccessDeniedError, match=r"^permission denied$"):
                    await operation(services, ids)
            assert action in policy.asked, f"management did not ask about {action}"
            policy.asked.clear()

    asyncio.run(go())
