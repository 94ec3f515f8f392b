"""The first thing a user does: log in, register a function, run a task, read its result."""

from __future__ import annotations

import base64
import json

from conftest import admin, audit_entries, login

from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform


def test_admin_registers_user_who_runs_echo(platform: RunningPlatform) -> None:
    root = admin(platform)
    root.auth.user_register("echo_user", "echo-password", "PlatformAdmin", "")
    user = login(platform, "echo_user", "echo-password")

    function_id = user.frontend.register_function(
        "builtin-echo", "returns its message", "builtin", arguments=[FunctionArgument("message")]
    )
    task_id = user.frontend.create_task(function_id, {"message": "Hello From Teaclave!"}, "builtin")
    user.frontend.invoke_task(task_id)

    assert user.frontend.get_task_result(task_id) == b"Hello From Teaclave!"
    task = user.frontend.get_task(task_id)
    assert task["status"] == 10
    assert task["creator"] == "echo_user"
    assert json.loads(task["function_arguments"]) == {"message": "Hello From Teaclave!"}


def test_task_log_is_returned_when_asked_for(platform: RunningPlatform) -> None:
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo",
        "echo with logs",
        "builtin",
        arguments=[FunctionArgument("message"), FunctionArgument("save_log")],
    )
    task_id = root.frontend.create_task(
        function_id, {"message": "Hello, Teaclave Tests!", "save_log": "true"}, "builtin"
    )
    root.frontend.invoke_task(task_id)
    assert root.frontend.get_task_result(task_id) == b"Hello, Teaclave Tests!"
    task = root.frontend.wait_task(task_id)
    assert any("Hello, Teaclave Tests!" in line for line in task.result.Ok.log)


def test_logs_never_contain_passwords_tokens_or_messages(platform: RunningPlatform) -> None:
    root = admin(platform)
    root.auth.user_register("secretive", "pa55-word-in-logs?", "PlatformAdmin", "")
    user = login(platform, "secretive", "pa55-word-in-logs?")
    function_id = user.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    task_id = user.frontend.create_task(function_id, {"message": "confidential-payload-42"}, "builtin")
    user.frontend.invoke_task(task_id)
    assert user.frontend.get_task_result(task_id) == b"confidential-payload-42"
    token = (user.frontend.metadata or {})["token"]

    logs = "".join(p.read_text() for p in (platform.state_dir / "logs").glob("*.log"))
    assert "invoke_task" in logs or "InvokeTask" in logs  # the logs are there and were read
    for secret in (platform.admin_password, "pa55-word-in-logs?", token, "confidential-payload-42"):
        assert secret not in logs


def test_frontend_calls_are_audited(platform: RunningPlatform) -> None:
    root = admin(platform)
    root.frontend.register_function("builtin-echo", "audited", "builtin", arguments=[FunctionArgument("message")])
    entries = audit_entries(root, f"+user:{platform.admin_user} +message:register_function", 1, 100)
    assert entries, "the call never reached the audit log"
    newest = entries[0]
    assert newest["result"] is True
    assert newest["message"] == "register_function"
    assert newest["user"] == f"{{ user: {platform.admin_user}, role: PlatformAdmin }}"
    assert len(base64.b64decode(newest["ip"])) == 16
