"""Two parties and one private function: nothing runs until both have approved."""

from __future__ import annotations

import pytest
from conftest import admin, login

from cloister.errors import AccessDeniedError, FailedOperationError
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform


def test_private_function_needs_both_approvals(platform: RunningPlatform) -> None:
    root = admin(platform)
    # The function owner must also approve tasks, which only an admin role may do in the
    # default policy (FunctionOwner may not approve tasks, DataOwner may not register functions).
    root.auth.user_register("alice", "alice-password", "PlatformAdmin", "")
    root.auth.user_register("bob", "bob-password", "DataOwner", "bank_b")
    alice = login(platform, "alice", "alice-password")
    bob = login(platform, "bob", "bob-password")

    function_id = alice.frontend.register_function(
        "builtin-echo",
        "alice's private echo",
        "builtin",
        public=False,
        arguments=[FunctionArgument("message")],
        user_allowlist=["bank_b"],
    )
    task_id = bob.frontend.create_task(function_id, {"message": "agreed"}, "builtin")
    assert sorted(bob.frontend.get_task(task_id)["participants"]) == ["alice", "bob"]

    with pytest.raises(FailedOperationError, match="failed to invoke task"):
        bob.frontend.invoke_task(task_id)
    bob.frontend.approve_task(task_id)
    with pytest.raises(FailedOperationError, match="failed to invoke task"):
        bob.frontend.invoke_task(task_id)
    with pytest.raises(AccessDeniedError):
        alice.frontend.invoke_task(task_id)  # only the creator invokes
    alice.frontend.approve_task(task_id)
    bob.frontend.invoke_task(task_id)

    assert bob.frontend.get_task_result(task_id) == b"agreed"
    assert alice.frontend.get_task(task_id)["status"] == 10


def test_user_outside_allowlist_cannot_use_private_function(platform: RunningPlatform) -> None:
    root = admin(platform)
    root.auth.user_register("carol", "carol-password", "DataOwner", "bank_c")
    carol = login(platform, "carol", "carol-password")
    function_id = root.frontend.register_function(
        "builtin-echo", "private", "builtin", public=False, arguments=[FunctionArgument("message")]
    )
    with pytest.raises(AccessDeniedError, match="permission denied"):
        carol.frontend.create_task(function_id, {"message": "x"}, "builtin")
