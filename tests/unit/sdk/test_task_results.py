"""``TaskHandle.result``: what it returns, what it raises, and that it never waits on a task that cannot run."""

from __future__ import annotations

import pytest
from fake_channel import FakeChannel, authentication_channel, task_message

from cloister import Client, Credentials, TaskResult
from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import ExecutorLostError, TaskCancelledError, TaskFailedError, TaskNotReadyError
from cloister.model.tasks import REASON_EXECUTOR_TIMEOUT, TaskStatus

TASK_ID = "task-00000000-0000-0000-0000-000000000001"
OK = common_pb.TaskResult(Ok=common_pb.TaskOutputs(return_value=b"agreed", tags_map={"out": bytes(16)}, log=["line 1"]))


def _err(reason: str) -> common_pb.TaskResult:
    return common_pb.TaskResult(Err=common_pb.TaskFailure(reason=reason))


def common_owner(name: str, user: str) -> fe_pb.OwnerList:
    return fe_pb.OwnerList(data_name=name, uids=[user])


def data_map(name: str, data_id: str) -> fe_pb.DataMap:
    return fe_pb.DataMap(data_name=name, data_id=data_id)


def _client(frontend: FakeChannel) -> Client:
    return Client(frontend, authentication_channel(), Credentials("alice", "pw"))


def _answering(first: object, waits: list[object] | None = None) -> FakeChannel:
    """The first WaitTask answers ``first`` (the task as the server finds it: ended, stuck or
    after its wait), each later one the next of ``waits`` (the last one repeats)."""
    pending = [first, *(waits or [first])]

    def wait(_request: object) -> object:
        return pending.pop(0) if len(pending) > 1 else pending[0]

    return FakeChannel().on("WaitTask", wait)


def _one_call_returning_if_stuck(frontend: FakeChannel) -> None:
    """The task was read and checked in one WaitTask that may not wait on a stuck task, no GetTask."""
    (request,) = frontend.sent("WaitTask")
    assert request.return_if_stuck
    assert frontend.sent("GetTask") == []


def test_finished_task_returns_its_result() -> None:
    frontend = _answering(task_message(status=TaskStatus.FINISHED, result=OK))
    result = _client(frontend).tasks.get(TASK_ID).result()
    assert result == TaskResult(b"agreed", {"out": bytes(16)}, ("line 1",))
    _one_call_returning_if_stuck(frontend)  # already ended: nothing more to wait for


def test_running_task_is_waited_for_with_the_long_poll() -> None:
    running = task_message(status=TaskStatus.RUNNING)
    frontend = _answering(running, [running, task_message(status=TaskStatus.FINISHED, result=OK)])
    assert _client(frontend).tasks.get(TASK_ID).result().return_value == b"agreed"
    first, second = frontend.calls[-2:]
    assert (first.method, first.service, second.method) == ("WaitTask", "Frontend", "WaitTask")
    assert first.request.task_id == TASK_ID and first.request.timeout_ms > 0
    assert first.timeout is not None and first.timeout > first.request.timeout_ms / 1000  # room to answer
    assert frontend.sent("GetTask") == []


@pytest.mark.parametrize("status", [TaskStatus.CREATED, TaskStatus.DATA_ASSIGNED, TaskStatus.APPROVED])
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_a_task_not_invoked_raises_at_once_with_what_is_missing(status: TaskStatus, timeout: float | None) -> None:
    task = task_message(
        status=status,
        participants=["alice", "bob", "carol"],
        approved_users=["alice"],
        inputs_ownership=[common_owner("left", "bob"), common_owner("right", "carol")],
        outputs_ownership=[common_owner("out", "alice")],
        assigned_inputs=[data_map("left", "input-1")],
    )
    frontend = _answering(task)
    with pytest.raises(TaskNotReadyError) as caught:
        _client(frontend).tasks.get(TASK_ID).result(timeout=timeout)
    message = str(caught.value)
    assert "not invoked" in message
    assert "approval by bob, carol" in message
    assert "input data right" in message and "left" not in message.split("input data")[1].split(";")[0]
    assert "output data out" in message
    assert "an invoke by its creator alice" in message
    _one_call_returning_if_stuck(frontend)


def test_an_approved_single_party_task_is_missing_only_the_invoke() -> None:
    frontend = _answering(task_message(status=TaskStatus.APPROVED, participants=["alice"]))
    with pytest.raises(TaskNotReadyError, match=r"missing: an invoke by its creator alice$"):
        _client(frontend).tasks.get(TASK_ID).result()


def test_a_staged_task_no_executor_can_run_raises_at_once_without_timeout() -> None:
    reason = "waiting: no live execution service can run it (needs executor 'wasm')"
    frontend = _answering(task_message(status=TaskStatus.STAGED, result=_err(reason)))
    with pytest.raises(TaskNotReadyError, match="needs executor 'wasm'"):
        _client(frontend).tasks.get(TASK_ID).result()
    _one_call_returning_if_stuck(frontend)


def test_a_staged_task_that_starts_waiting_later_is_noticed() -> None:
    staged = task_message(status=TaskStatus.STAGED)
    waiting = task_message(status=TaskStatus.STAGED, result=_err("waiting: no live execution service"))
    frontend = _answering(staged, [waiting])
    with pytest.raises(TaskNotReadyError, match="no live execution service"):
        _client(frontend).tasks.get(TASK_ID).result()
    assert [r.return_if_stuck for r in frontend.sent("WaitTask")] == [True, False]  # judged where the slice ends


def test_only_the_first_call_returns_if_stuck() -> None:
    waiting = task_message(status=TaskStatus.STAGED, result=_err("waiting: no live execution service"))
    frontend = _answering(waiting, [task_message(status=TaskStatus.FINISHED, result=OK)])
    assert _client(frontend).tasks.get(TASK_ID).result(timeout=30).return_value == b"agreed"
    assert [r.return_if_stuck for r in frontend.sent("WaitTask")] == [True, False]  # then it waits for a service


def test_with_a_timeout_a_waiting_task_is_waited_for_and_times_out() -> None:
    waiting = task_message(status=TaskStatus.STAGED, result=_err("waiting: no live execution service"))
    frontend = _answering(waiting, [waiting])
    with pytest.raises(TimeoutError, match=r"still Staged .*no live execution service"):
        _client(frontend).tasks.get(TASK_ID).result(timeout=0.05)
    assert frontend.sent("WaitTask")  # it did wait, in case an execution service comes


def test_timeout_raises_the_builtin_timeout_error() -> None:
    running = task_message(status=TaskStatus.RUNNING)
    frontend = _answering(running, [running])
    with pytest.raises(TimeoutError, match="still Running"):
        _client(frontend).tasks.get(TASK_ID).result(timeout=0.05)
    assert all(r.timeout_ms <= 50 for r in frontend.sent("WaitTask"))


def test_zero_timeout_does_not_wait() -> None:
    running = task_message(status=TaskStatus.RUNNING)
    frontend = _answering(running, [running])
    with pytest.raises(TimeoutError):
        _client(frontend).tasks.get(TASK_ID).result(timeout=0)
    assert [r.timeout_ms for r in frontend.sent("WaitTask")] == [1]  # the task is read, with no wait to speak of


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (TaskStatus.FAILED, "ZeroDivisionError: division by zero", TaskFailedError),
        (TaskStatus.FAILED, f"{REASON_EXECUTOR_TIMEOUT}: executor-1 went silent", ExecutorLostError),
        (TaskStatus.CANCELED, "Task Canceled by the user", TaskCancelledError),
    ],
)
def test_an_ended_task_without_a_result_raises_who_caused_it(
    status: TaskStatus, reason: str, error: type[Exception]
) -> None:
    running = task_message(status=TaskStatus.RUNNING)
    frontend = _answering(running, [task_message(status=status, result=_err(reason))])
    with pytest.raises(error) as caught:
        _client(frontend).tasks.get(TASK_ID).result()
    assert type(caught.value) is error
    assert caught.value.task_id == TASK_ID and caught.value.reason == reason  # type: ignore[attr-defined]


def test_wait_returns_a_failed_task_instead_of_raising() -> None:
    frontend = _answering(task_message(status=TaskStatus.FAILED, result=_err("boom")))
    task = _client(frontend).tasks.get(TASK_ID).wait()
    assert task.status is TaskStatus.FAILED and task.failure == "boom" and task.result is None
