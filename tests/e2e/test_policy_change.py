"""An operator changes who may do what by editing the policy files and restarting access control."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import Session, admin, login

from cloister.errors import AccessDeniedError, CloisterError
from cloister.launcher import ServiceFailedError
from cloister.sdk import FunctionArgument
from cloister.services.frontend.gate import DECISION_TTL
from cloister.testing import RunningPlatform, start_platform

T = TypeVar("T")
# docs/access-control.md's example: the APIs a task's creator calls, and the object rule.
CREATOR_APIS_FOR_FUNCTION_OWNERS = (
    "p, rule_function_owner, create_task\np, rule_function_owner, invoke_task\np, rule_function_owner, cancel_task\n"
)
CREATE_TASK_AS_FUNCTION_OWNER = 'p, task.create, r.sub.role == "FunctionOwner" && r.sub.id == r.obj.owner\n'


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policy"
    command = [sys.executable, "-m", "cloister", "policy", "init", str(directory)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return directory


@pytest.fixture
def running(tmp_path: Path, policy_dir: Path) -> Iterator[RunningPlatform]:
    (tmp_path / "platform").mkdir()
    env = {"CLOISTER_ACCESS_CONTROL__POLICY_DIR": str(policy_dir)}
    with start_platform(tmp_path / "platform", env=env) as platform:
        yield platform


def _restart_access_control(platform: RunningPlatform) -> None:
    platform.platform.stop_service("access_control")
    platform.platform.start_service("access_control")


def _eventually(attempt: Callable[[], T], seconds: float = 10) -> T:
    """``attempt()`` once it stops being denied: the frontend remembers role → API answers briefly."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except AccessDeniedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _object_decisions(root: Session, user: str) -> list[bool]:
    """The access control service's task.create decisions about ``user``, as the audit log has them."""
    entries = root.frontend.query_audit_logs('message:"authorize task.create"', 100)["logs"]
    return [e["result"] for e in entries if e["user"].startswith(f"{{ user: {user},")]


def _recorded(root: Session, user: str, decision: bool) -> bool:
    """Whether ``decision`` about ``user`` reaches the audit log (entries arrive within a second)."""
    deadline = time.monotonic() + 5
    while decision not in _object_decisions(root, user):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_letting_function_owners_create_tasks_takes_a_policy_edit_and_a_restart(
    running: RunningPlatform, policy_dir: Path
) -> None:
    root = admin(running)
    root.auth.user_register("fo", "fo-password", "FunctionOwner", "")
    fo = login(running, "fo", "fo-password")
    function_id = fo.frontend.register_function("builtin-echo", "", "builtin", arguments=[FunctionArgument("message")])
    create = lambda: fo.frontend.create_task(function_id, {"message": "mine"}, "builtin")  # noqa: E731
    with pytest.raises(AccessDeniedError, match="permission denied"):
        create()
    assert _object_decisions(root, "fo") == []  # refused by the role -> API rules already

    # Teaclave's role -> API rule now lets the role through; the object rule still refuses it.
    with (policy_dir / "policy.csv").open("a") as f:
        f.write(CREATOR_APIS_FOR_FUNCTION_OWNERS)
    _restart_access_control(running)
    time.sleep(DECISION_TTL + 0.2)  # the frontend's remembered "no" for (FunctionOwner, create_task) runs out
    with pytest.raises(AccessDeniedError, match="permission denied"):
        create()
    assert _recorded(root, "fo", False)

    # One more row in object_policy.csv, and a function owner may use their own function.
    with (policy_dir / "object_policy.csv").open("a") as f:
        f.write(CREATE_TASK_AS_FUNCTION_OWNER)
    _restart_access_control(running)
    task_id = _eventually(create)
    assert task_id.startswith("task-")
    assert _recorded(root, "fo", True)
    # The creator's other steps are allowed too, so the task runs to its end: no deadlock.
    fo.frontend.invoke_task(task_id)
    assert fo.frontend.get_task_result(task_id) == b"mine"
    assert fo.frontend.get_task(task_id)["status"] == 10  # Finished
    fo.frontend.cancel_task(create())

    # Others' functions stay out of reach, and removing the row takes the permission away again.
    others = root.frontend.register_function("builtin-echo", "", "builtin", arguments=[FunctionArgument("message")])
    with pytest.raises(AccessDeniedError):
        fo.frontend.create_task(others, {"message": "theirs"}, "builtin")
    text = (policy_dir / "object_policy.csv").read_text()
    (policy_dir / "object_policy.csv").write_text(text.replace(CREATE_TASK_AS_FUNCTION_OWNER, ""))
    _restart_access_control(running)
    with pytest.raises(AccessDeniedError):
        create()


def test_a_policy_that_does_not_parse_stops_access_control_from_starting(
    running: RunningPlatform, policy_dir: Path
) -> None:
    with (policy_dir / "object_policy.csv").open("a") as f:
        f.write("p, task.read, r.sub.id in in r.obj.participants\n")
    running.platform.stop_service("access_control")
    with pytest.raises(ServiceFailedError, match="access_control exited"):
        running.platform.start_service("access_control")
    log = (running.platform.log_dir / "access_control.log").read_text()
    assert "the rule for task.read does not parse" in log


def test_without_access_control_nothing_is_allowed(running: RunningPlatform) -> None:
    root = admin(running)
    function_id = root.frontend.register_function("builtin-echo", "", "builtin", arguments=[FunctionArgument("m")])
    running.platform.stop_service("access_control")
    # Within the frontend's brief memory of role -> API answers the call reaches management,
    # which cannot ask about the function; after it, the frontend cannot ask either.
    for _ in range(2):
        with pytest.raises(CloisterError) as refused:
            root.frontend.get_function(function_id)
        assert refused.value.status.name in ("PERMISSION_DENIED", "UNAVAILABLE")
        time.sleep(DECISION_TTL + 0.2)
    running.platform.start_service("access_control")
    assert _eventually(lambda: root.frontend.get_function(function_id))["name"] == "builtin-echo"
