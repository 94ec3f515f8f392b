"""ListTasks over a real platform: each user's own tasks, newest first, paged, with the approval
inbox; and InvokeTask refusals that say what is missing.

The calls are raw requests through the Teaclave-compatible client's attested channel, so this
tests the server alone, whatever client wraps it.
"""

from __future__ import annotations

import base64

import pytest
from conftest import Session, admin, audit_entries, login
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloister._proto import cloister_pb2 as cpb
from cloister.errors import AccessDeniedError, FailedOperationError, InvalidArgumentError
from cloister.model.tasks import TaskStatus
from cloister.sdk import DataMap, FunctionArgument, FunctionInput, OwnerList
from cloister.sdk._channel import CLOISTER_FRONTEND
from cloister.testing import RunningPlatform

KEY, IV = bytes(range(16)), bytes(range(12))


def list_tasks(session: Session, **fields: object) -> cpb.ListTasksResponse:
    return session.frontend._call("ListTasks", cpb.ListTasksRequest(**fields), service=CLOISTER_FRONTEND)


def ids(session: Session, **fields: object) -> list[str]:
    """Every task id the user lists, following the page tokens."""
    found: list[str] = []
    token = ""
    while True:
        page = list_tasks(session, page_token=token, **fields)
        found += [task.task_id for task in page.tasks]
        token = page.next_page_token
        if not token:
            return found


def users(platform: RunningPlatform, *names: str) -> list[Session]:
    root = admin(platform)
    for name in names:
        root.auth.user_register(name, f"{name}-password", "DataOwner", f"org_{name}")
    return [login(platform, name, f"{name}-password") for name in names]


def echo_function(platform: RunningPlatform, *inputs: str) -> str:
    return admin(platform).frontend.register_function(
        "builtin-echo",
        "echo",
        "builtin",
        arguments=[FunctionArgument("message")],
        inputs=[FunctionInput(name) for name in inputs],
    )


def encrypted_input(session: Session) -> str:
    """An AES-GCM input of the session's user, served from a data: URL."""
    sealed = AESGCM(KEY).encrypt(IV, b"bob's secret", bytes(8))
    url = "data:text/plain;base64," + base64.b64encode(sealed).decode()
    return session.frontend.register_input_file(url, "aes-gcm-128", KEY, IV, sealed[-16:])


def test_two_party_task_in_each_inbox_until_approved(platform: RunningPlatform) -> None:
    alice, bob, zed = users(platform, "inbox_alice", "inbox_bob", "inbox_zed")
    function_id = echo_function(platform, "in_b")
    task_id = alice.frontend.create_task(
        function_id, {"message": "agreed"}, "builtin", inputs_ownership=[OwnerList("in_b", ["inbox_bob"])]
    )
    listed = list_tasks(bob).tasks
    assert [t.task_id for t in listed] == [task_id]
    assert sorted(listed[0].participants) == ["inbox_alice", "inbox_bob"] and listed[0].status == TaskStatus.CREATED
    assert ids(bob, awaiting_my_approval=True) == [task_id] == ids(alice, awaiting_my_approval=True)

    bob.frontend.assign_data_to_task(task_id, inputs=[DataMap("in_b", encrypted_input(bob))])
    assert ids(bob, awaiting_my_approval=True) == [task_id]
    bob.frontend.approve_task(task_id)
    assert ids(bob, awaiting_my_approval=True) == []
    assert ids(alice, awaiting_my_approval=True) == [task_id]
    assert ids(bob) == [task_id]  # still one of bob's tasks

    alice.frontend.approve_task(task_id)
    assert ids(alice, awaiting_my_approval=True) == []
    alice.frontend.invoke_task(task_id)
    assert alice.frontend.get_task_result(task_id) == b"agreed"
    assert ids(bob, statuses=[TaskStatus.FINISHED]) == [task_id]
    assert ids(bob, statuses=[TaskStatus.CREATED, TaskStatus.RUNNING]) == []
    assert ids(zed) == [] and ids(zed, awaiting_my_approval=True) == []
    # Each call is audited under its API name, and each task listed was decided by access control.
    root = admin(platform)
    assert audit_entries(root, "message:list_tasks -message:authorize", 1)
    decisions = audit_entries(root, f'message:"authorize task.read {task_id}"', 2)
    assert decisions and all(e["result"] for e in decisions)


def test_pages_follow_each_other_newest_first(platform: RunningPlatform) -> None:
    (carol,) = users(platform, "pager_carol")
    function_id = echo_function(platform)
    created = [carol.frontend.create_task(function_id, {"message": str(i)}, "builtin") for i in range(7)]
    pages = []
    token = ""
    while True:
        page = list_tasks(carol, page_size=3, page_token=token)
        pages.append([t.task_id for t in page.tasks])
        token = page.next_page_token
        if not token:
            break
    assert pages == [created[6:3:-1], created[3:0:-1], created[:1]]
    assert ids(carol) == created[::-1]  # the default page holds them all
    carol.frontend.invoke_task(created[2])
    carol.frontend.get_task_result(created[2])
    assert ids(carol, statuses=[TaskStatus.FINISHED], page_size=1) == [created[2]]
    assert len(ids(carol, statuses=[TaskStatus.CREATED], page_size=2)) == 6


def test_bad_page_requests_say_what_is_wrong(platform: RunningPlatform) -> None:
    (dave,) = users(platform, "pager_dave")
    with pytest.raises(InvalidArgumentError, match="page_size 1001 is too large: at most 1000"):
        list_tasks(dave, page_size=1001)
    assert list(list_tasks(dave, page_size=1000).tasks) == []
    for token in ("not a token", base64.urlsafe_b64encode(b"task-123").decode()):
        with pytest.raises(InvalidArgumentError, match="page_token is not valid"):
            list_tasks(dave, page_token=token)


def test_invoke_refusal_names_what_is_missing_to_the_creator_only(platform: RunningPlatform) -> None:
    alice, bob, zed = users(platform, "invoke_alice", "invoke_bob", "invoke_zed")
    function_id = echo_function(platform, "in_b")
    task_id = alice.frontend.create_task(
        function_id, {"message": "hi"}, "builtin", inputs_ownership=[OwnerList("in_b", ["invoke_bob"])]
    )
    with pytest.raises(FailedOperationError) as refused:
        alice.frontend.invoke_task(task_id)
    assert refused.value.message == (
        "failed to invoke task: no file assigned to input in_b; not approved by invoke_alice, invoke_bob"
    )
    for other in (bob, zed):  # a participant who did not create it, and a stranger: nothing more
        with pytest.raises(AccessDeniedError) as denied:
            other.frontend.invoke_task(task_id)
        assert denied.value.message == "permission denied"
    bob.frontend.assign_data_to_task(task_id, inputs=[DataMap("in_b", encrypted_input(bob))])
    bob.frontend.approve_task(task_id)
    with pytest.raises(FailedOperationError, match=r"^failed to invoke task: not approved by invoke_alice$"):
        alice.frontend.invoke_task(task_id)
    alice.frontend.approve_task(task_id)
    alice.frontend.invoke_task(task_id)
    with pytest.raises(FailedOperationError, match=r"^failed to invoke task: it is already (Staged|Running|Finished)$"):
        alice.frontend.invoke_task(task_id)
    assert alice.frontend.get_task_result(task_id) == b"hi"
