"""The Teaclave classes over a fake channel: each method's return shape against the table of
what Teaclave's Python SDK returns (``data/teaclave_sdk_returns.csv``), shared logins, and waits
that never hang."""

from __future__ import annotations

import base64
import csv
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_channel import FakeChannel, task_message
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import (
    AuthenticationError,
    ExecutorLostError,
    InvalidTaskIdError,
    TaskCancelledError,
    TaskFailedError,
    TaskNotReadyError,
)
from cloister.model.tasks import REASON_EXECUTOR_TIMEOUT, TaskStatus
from cloister.sdk import (
    AuthenticationService,
    CryptoInfo,
    DataMap,
    FrontendService,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    OwnerList,
    TeaclaveException,
)

TABLE = Path(__file__).parent / "data" / "teaclave_sdk_returns.csv"
CLASSES = {"AuthenticationService": AuthenticationService, "FrontendService": FrontendService}
FUNCTION_ID = "function-00000000-0000-0000-0000-0000000000f1"
TASK_ID = "task-00000000-0000-0000-0000-000000000001"
DATA_ID = "input-00000000-0000-0000-0000-0000000000d1"
METADATA = {"id": "alice", "token": "token-1"}
TAG = bytes(range(16))
OK = common_pb.TaskResult(Ok=common_pb.TaskOutputs(return_value=b"agreed", tags_map={"out": TAG}, log=["line 1"]))


def _rows() -> list[dict[str, str]]:
    with TABLE.open(newline="") as table:
        return list(csv.DictReader(table))


def _public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or inspect.ismethod(member))
    }


# Per method: how it is called, what the fake frontend answers (by RPC), and the value expected
# for scalar returns. Answers keep fields at their defaults (status 0, result False, empty
# lists) to show that a dict keeps every field.
Call = Callable[[Any], Any]
CASES: dict[str, tuple[Call, dict[str, Message], Any]] = {
    "close": (lambda s: s.close(), {}, None),
    "user_register": (lambda s: s.user_register("bob", "pw", "DataOwner", "org"), {}, None),
    "user_update": (lambda s: s.user_update("bob", "pw", "DataOwner"), {}, None),
    "user_login": (lambda s: s.user_login("alice", "pw"), {"UserLogin": apb.UserLoginResponse(token="t")}, "t"),
    "user_change_password": (lambda s: s.user_change_password("pw2"), {}, None),
    "reset_user_password": (
        lambda s: s.reset_user_password("bob"),
        {"ResetUserPassword": apb.ResetUserPasswordResponse(password="new")},
        "new",
    ),
    "delete_user": (lambda s: s.delete_user("bob"), {}, None),
    "list_users": (lambda s: s.list_users("org"), {"ListUsers": apb.ListUsersResponse(ids=["bob"])}, ["bob"]),
    "register_function": (
        lambda s: s.register_function("f", "d", "python", payload=[1, 2], arguments=[FunctionArgument("a")]),
        {"RegisterFunction": fe_pb.RegisterFunctionResponse(function_id=FUNCTION_ID)},
        FUNCTION_ID,
    ),
    "update_function": (
        lambda s: s.update_function(FUNCTION_ID, "f", "d", "builtin", inputs=[FunctionInput("in")]),
        {"UpdateFunction": fe_pb.UpdateFunctionResponse(function_id=FUNCTION_ID)},
        FUNCTION_ID,
    ),
    "set_function_requirements": (lambda s: s.set_function_requirements(FUNCTION_ID, ["gpu"]), {}, None),
    "list_functions": (
        lambda s: s.list_functions("alice"),
        {"ListFunctions": fe_pb.ListFunctionsResponse(registered_functions=[FUNCTION_ID])},
        None,
    ),
    "get_function": (
        lambda s: s.get_function(FUNCTION_ID),
        {
            "GetFunction": fe_pb.GetFunctionResponse(
                name="builtin-echo",
                executor_type="builtin",
                owner="alice",
                public=False,
                arguments=[fe_pb.FunctionArgument(key="message", allow_overwrite=True)],
            )
        },
        None,
    ),
    "get_function_usage_stats": (
        lambda s: s.get_function_usage_stats(FUNCTION_ID),
        {"GetFunctionUsageStats": fe_pb.GetFunctionUsageStatsResponse(function_quota=-1, current_usage=0)},
        None,
    ),
    "delete_function": (lambda s: s.delete_function(FUNCTION_ID), {}, None),
    "disable_function": (lambda s: s.disable_function(FUNCTION_ID), {}, None),
    "register_input_file": (
        lambda s: s.register_input_file("https://x/in", "aes-gcm-128", [0] * 16, [0] * 12, list(TAG)),
        {"RegisterInputFile": fe_pb.RegisterInputFileResponse(data_id=DATA_ID)},
        DATA_ID,
    ),
    "register_output_file": (
        lambda s: s.register_output_file("https://x/out", "aes-gcm-128", bytes(16), bytes(12)),
        {"RegisterOutputFile": fe_pb.RegisterOutputFileResponse(data_id=DATA_ID)},
        DATA_ID,
    ),
    "update_input_file": (
        lambda s: s.update_input_file(DATA_ID, "https://x/in2"),
        {"UpdateInputFile": fe_pb.UpdateInputFileResponse(data_id=DATA_ID)},
        DATA_ID,
    ),
    "update_output_file": (
        lambda s: s.update_output_file(DATA_ID, "https://x/out2"),
        {"UpdateOutputFile": fe_pb.UpdateOutputFileResponse(data_id=DATA_ID)},
        DATA_ID,
    ),
    "register_fusion_output": (
        lambda s: s.register_fusion_output(["alice", "bob"]),
        {"RegisterFusionOutput": fe_pb.RegisterFusionOutputResponse(data_id=DATA_ID)},
        DATA_ID,
    ),
    "register_input_from_output": (
        lambda s: s.register_input_from_output(DATA_ID),
        {"RegisterInputFromOutput": fe_pb.RegisterInputFromOutputResponse(data_id=DATA_ID)},
        DATA_ID,
    ),
    "get_input_file": (
        lambda s: s.get_input_file(DATA_ID),
        {"GetInputFile": fe_pb.GetInputFileResponse(owner=["alice"], cmac=TAG)},
        None,
    ),
    "get_output_file": (
        lambda s: s.get_output_file(DATA_ID),
        {"GetOutputFile": fe_pb.GetOutputFileResponse(owner=["alice"])},
        None,
    ),
    "create_task": (
        lambda s: s.create_task(FUNCTION_ID, {"a": "1"}, "builtin", [OwnerList("in", ["alice"])]),
        {"CreateTask": fe_pb.CreateTaskResponse(task_id=TASK_ID)},
        TASK_ID,
    ),
    "assign_data_to_task": (lambda s: s.assign_data_to_task(TASK_ID, [DataMap("in", DATA_ID)], []), {}, None),
    "approve_task": (lambda s: s.approve_task(TASK_ID), {}, None),
    "invoke_task": (lambda s: s.invoke_task(TASK_ID), {}, None),
    "cancel_task": (lambda s: s.cancel_task(TASK_ID), {}, None),
    "get_task": (lambda s: s.get_task(TASK_ID), {"GetTask": task_message(result=common_pb.TaskResult())}, None),
    "wait_task": (
        lambda s: s.wait_task(TASK_ID, 1.0),
        {"WaitTask": task_message(status=TaskStatus.FINISHED, result=OK)},
        None,
    ),
    "get_task_result": (
        lambda s: s.get_task_result(TASK_ID),
        {"WaitTask": task_message(status=TaskStatus.FINISHED, result=OK)},
        b"agreed",
    ),
    "get_output_cmac_by_tag": (
        lambda s: s.get_output_cmac_by_tag(TASK_ID, "out"),
        {"WaitTask": task_message(status=TaskStatus.FINISHED, result=OK)},
        TAG,
    ),
    "query_audit_logs": (
        lambda s: s.query_audit_logs("message:get_task", 10),
        {
            "QueryAuditLogs": fe_pb.QueryAuditLogsResponse(
                logs=[common_pb.Entry(microsecond=1_700_000_000_000_000, ip=bytes(16), user="", message="m")]
            )
        },
        None,
    ),
}


def _teaclave_dict(message: Message) -> dict[str, Any]:
    """Teaclave's own MessageToDict call (which drops fields at their defaults)."""
    return MessageToDict(message, preserving_proto_field_name=True, use_integers_for_enums=True)


def _service(cls: type, channel: FakeChannel) -> Any:
    service = cls.from_channel(channel)
    service.metadata = dict(METADATA)
    return service


def test_the_table_lists_every_public_method_of_both_classes() -> None:
    listed = {(row["class"], row["method"]) for row in _rows()}
    public = {(name, method) for name, cls in CLASSES.items() for method in _public_methods(cls)}
    assert listed == public
    assert {row["method"] for row in _rows()} <= set(CASES) | {"from_channel"}
    assert len(listed) == len(_rows())  # no method twice


@pytest.mark.parametrize("row", [r for r in _rows() if r["method"] != "from_channel"], ids=lambda r: r["method"])
def test_each_method_returns_the_shape_in_the_table(row: dict[str, str]) -> None:
    call, answers, expected = CASES[row["method"]]
    channel = FakeChannel()
    for rpc, answer in answers.items():
        channel.on(rpc, answer)
    result = call(_service(CLASSES[row["class"]], channel))

    if row["rpc"] != "-":
        assert row["rpc"] in [c.method for c in channel.calls]
    kind = row["returns"]
    if kind == "none":
        assert result is None
    elif kind in ("str", "bytes", "list[str]"):
        assert result == expected and type(result).__name__ == kind.split("[")[0]
    elif kind == "dict":
        (answer,) = [answers[rpc] for rpc in answers if rpc == row["rpc"]]
        assert isinstance(result, dict)
        assert set(result) == {f.name for f in answer.DESCRIPTOR.fields}  # no field dropped at its default
        assert result == {**_teaclave_dict(answer), **result}  # Teaclave's values wherever Teaclave had a key
        assert all(not isinstance(v, Message) for v in result.values())
    elif kind == "GetTaskResponse":
        assert isinstance(result, fe_pb.GetTaskResponse)
    else:
        raise AssertionError(f"unknown return kind {kind!r} in {TABLE.name}")


@pytest.mark.parametrize("cls", list(CLASSES.values()))
def test_from_channel_makes_an_instance_with_no_login(cls: type) -> None:
    service = cls.from_channel(FakeChannel())
    assert isinstance(service, cls) and service.metadata is None
    with pytest.raises(AttributeError):
        _ = service.attested_identity  # nothing was attested: the channel was given


def test_a_new_tasks_status_is_in_get_task() -> None:
    """The README's ``get_task(t)["status"]`` on a new task: Teaclave's dict had no status (0 is a default)."""
    frontend = _service(FrontendService, FakeChannel().on("GetTask", task_message(result=common_pb.TaskResult())))
    task = frontend.get_task(TASK_ID)
    assert "status" not in _teaclave_dict(task_message())
    assert task["status"] == TaskStatus.CREATED == 0
    assert task["result"] == {} and task["participants"] == [] and task["function_arguments"] == ""


def test_dicts_are_json_values_as_message_to_dict_writes_them() -> None:
    entry = common_pb.Entry(microsecond=1_700_000_000_000_001, ip=bytes(16), user="", message="m", result=False)
    frontend = _service(FrontendService, FakeChannel().on("QueryAuditLogs", fe_pb.QueryAuditLogsResponse(logs=[entry])))
    (logged,) = frontend.query_audit_logs("m", 1)["logs"]
    ip = base64.b64encode(bytes(16)).decode()
    assert logged == {"microsecond": "1700000000000001", "ip": ip, "user": "", "message": "m", "result": False}
    nothing = _service(FrontendService, FakeChannel().on("QueryAuditLogs", fe_pb.QueryAuditLogsResponse()))
    assert nothing.query_audit_logs("none", 1) == {"logs": []}


def test_requests_are_teaclaves() -> None:
    channel = (
        FakeChannel()
        .on("RegisterFunction", fe_pb.RegisterFunctionResponse())
        .on("CreateTask", fe_pb.CreateTaskResponse())
        .on("RegisterInputFile", fe_pb.RegisterInputFileResponse())
    )
    frontend = _service(FrontendService, channel)
    frontend.register_function(
        "f",
        "d",
        "python",
        public=False,
        payload=[1, 2],
        arguments=[FunctionArgument("a", "x", allow_overwrite=False)],
        inputs=[FunctionInput("in", "the input", optional=True)],
        outputs=[FunctionOutput("out")],
        user_allowlist=["bob"],
    )
    assert channel.sent("RegisterFunction") == [
        fe_pb.RegisterFunctionRequest(
            name="f",
            description="d",
            executor_type="python",
            public=False,
            payload=b"\x01\x02",
            arguments=[fe_pb.FunctionArgument(key="a", default_value="x", allow_overwrite=False)],
            inputs=[fe_pb.FunctionInput(name="in", description="the input", optional=True)],
            outputs=[fe_pb.FunctionOutput(name="out")],
            user_allowlist=["bob"],
            usage_quota=-1,
        )
    ]
    frontend.create_task(FUNCTION_ID, {"a": "1"}, "mesapy", [OwnerList("in", ["alice"])], [OwnerList("out", ["bob"])])
    assert channel.sent("CreateTask") == [
        fe_pb.CreateTaskRequest(
            function_id=FUNCTION_ID,
            function_arguments='{"a": "1"}',
            executor="mesapy",
            inputs_ownership=[fe_pb.OwnerList(data_name="in", uids=["alice"])],
            outputs_ownership=[fe_pb.OwnerList(data_name="out", uids=["bob"])],
        )
    ]
    frontend.register_input_file("u", "aes-gcm-128", [1] * 16, [2] * 12, [3] * 16)
    assert channel.sent("RegisterInputFile")[0].crypto_info == CryptoInfo("aes-gcm-128", [1] * 16, [2] * 12).message
    frontend.set_function_requirements(FUNCTION_ID, ["gpu"])
    assert channel.last("SetFunctionRequirements").service == "Frontend"
    assert channel.sent("SetFunctionRequirements") == [
        cpb.FunctionRequirementsRequest(function_id=FUNCTION_ID, labels=["gpu"])
    ]
    assert {c.service for c in channel.calls if c.method != "SetFunctionRequirements"} == {"TeaclaveFrontend"}


def test_a_login_is_shared_by_assigning_metadata() -> None:
    auth_channel = (
        FakeChannel().on("UserLogin", apb.UserLoginResponse(token="token-9")).on("ListUsers", apb.ListUsersResponse())
    )
    frontend_channel = FakeChannel()
    auth = AuthenticationService.from_channel(auth_channel)
    frontend = FrontendService.from_channel(frontend_channel)

    assert auth.user_login("alice", "pw") == "token-9"
    assert auth_channel.last("UserLogin").metadata is None  # logging in sends no token
    assert auth.metadata == {"id": "alice", "token": "token-9"}
    frontend.metadata = auth.metadata
    frontend.approve_task(TASK_ID)
    auth.list_users("alice")
    assert frontend_channel.last("ApproveTask").metadata == {"id": "alice", "token": "token-9"}
    assert auth_channel.last("ListUsers").metadata == {"id": "alice", "token": "token-9"}
    assert auth_channel.last("ListUsers").service == "TeaclaveAuthenticationApi"


@pytest.mark.parametrize("cls", list(CLASSES.values()))
def test_a_call_before_logging_in_is_refused_unsent(cls: type) -> None:
    channel = FakeChannel()
    service = cls.from_channel(channel)
    with pytest.raises(AuthenticationError, match="log in first"):
        (service.list_users if cls is AuthenticationService else service.get_task)("x")
    assert channel.calls == []


def test_errors_arrive_as_the_channel_raised_them() -> None:
    def refuse(_request: object) -> Any:
        raise InvalidTaskIdError()

    frontend = _service(FrontendService, FakeChannel().on("GetTask", refuse))
    with pytest.raises(InvalidTaskIdError) as caught:
        frontend.get_task(TASK_ID)
    assert isinstance(caught.value, TeaclaveException)


# --- get_task_result never hangs ------------------------------------------------------------


def test_get_task_result_on_a_task_never_invoked_says_what_is_missing_at_once() -> None:
    created = task_message(
        participants=["alice", "bob"],
        approved_users=["alice"],
        inputs_ownership=[fe_pb.OwnerList(data_name="in", uids=["bob"])],
    )
    channel = FakeChannel().on("WaitTask", created)  # answered at once: the task is stuck
    with pytest.raises(TaskNotReadyError) as caught:
        _service(FrontendService, channel).get_task_result(TASK_ID)
    assert "bob" in caught.value.reason and "in" in caught.value.reason
    (asked,) = channel.sent("WaitTask")
    assert asked.return_if_stuck


def test_get_task_result_raises_timeout_error_when_its_timeout_passes() -> None:
    running = task_message(status=TaskStatus.RUNNING)
    channel = FakeChannel().on("WaitTask", running)
    with pytest.raises(TimeoutError, match="still Running"):
        _service(FrontendService, channel).get_task_result(TASK_ID, timeout=0.05)
    assert channel.sent("WaitTask")  # it did wait, with the long poll


def test_get_task_result_waits_for_a_running_task() -> None:
    answers = [task_message(status=TaskStatus.RUNNING), task_message(status=TaskStatus.FINISHED, result=OK)]
    channel = FakeChannel().on("WaitTask", lambda _request: answers.pop(0))
    assert _service(FrontendService, channel).get_task_result(TASK_ID) == b"agreed"
    assert len(channel.sent("WaitTask")) == 2 and answers == []
    assert channel.last("WaitTask").metadata == METADATA


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (TaskStatus.FAILED, "function raised", TaskFailedError),
        (TaskStatus.FAILED, f"{REASON_EXECUTOR_TIMEOUT}: gone", ExecutorLostError),
        (TaskStatus.CANCELED, "cancelled by bob", TaskCancelledError),
    ],
)
def test_get_task_result_and_cmac_raise_how_the_task_ended(status: TaskStatus, reason: str, error: type) -> None:
    ended = task_message(status=status, result=common_pb.TaskResult(Err=common_pb.TaskFailure(reason=reason)))
    frontend = _service(FrontendService, FakeChannel().on("WaitTask", ended))
    with pytest.raises(error, match=reason):
        frontend.get_task_result(TASK_ID)
    with pytest.raises(error):
        frontend.get_output_cmac_by_tag(TASK_ID, "out")


def test_wait_task_keeps_returning_the_message() -> None:
    channel = FakeChannel().on("WaitTask", task_message(status=TaskStatus.RUNNING))
    task = _service(FrontendService, channel).wait_task(TASK_ID, 0.5)
    assert isinstance(task, fe_pb.GetTaskResponse) and task.status == TaskStatus.RUNNING
    assert channel.last("WaitTask").service == "Frontend" and channel.sent("WaitTask")[0].timeout_ms == 500


def test_wait_task_without_a_timeout_refuses_at_once_a_task_that_is_not_invoked() -> None:
    channel = FakeChannel().on("WaitTask", task_message(status=TaskStatus.CREATED, function_arguments="{}"))
    with pytest.raises(TaskNotReadyError, match="not invoked"):
        _service(FrontendService, channel).wait_task(TASK_ID)
    (asked,) = channel.sent("WaitTask")  # which the frontend answers at once, the task being stuck
    assert asked.return_if_stuck and channel.sent("GetTask") == []


def test_wait_task_without_a_timeout_waits_in_slices_until_the_task_ends() -> None:
    answers = iter([TaskStatus.RUNNING, TaskStatus.FINISHED])
    channel = FakeChannel().on("WaitTask", lambda _request: task_message(status=next(answers)))
    task = _service(FrontendService, channel).wait_task(TASK_ID)
    assert task.status == TaskStatus.FINISHED and len(channel.sent("WaitTask")) == 2
