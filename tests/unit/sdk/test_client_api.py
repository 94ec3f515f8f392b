"""Every method of the Pythonic client, over a fake channel: the request it sends and what it returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_channel import FakeChannel, authentication_channel, task_message

from cloister import Client, Credentials, Crypto, TaskStatus, Trust
from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import ConfigurationError, InvalidArgumentError, InvalidTaskIdError
from cloister.model import File, Function, FunctionArgument, FunctionFile, Task
from cloister.sdk import FileHandle, FunctionHandle, TaskHandle
from cloister.sdk import FunctionArgument as TeaclaveFunctionArgument
from cloister.sdk import FunctionInput as TeaclaveFunctionInput
from cloister.sdk._client import _split

FUNCTION_ID = "function-00000000-0000-0000-0000-0000000000f1"
TASK_ID = "task-00000000-0000-0000-0000-000000000001"


@pytest.fixture
def frontend() -> FakeChannel:
    return FakeChannel()


@pytest.fixture
def auth() -> FakeChannel:
    return authentication_channel()


@pytest.fixture
def client(frontend: FakeChannel, auth: FakeChannel) -> Client:
    return Client(frontend, auth, Credentials("alice", "alice-password"))


def test_every_call_carries_the_login(client: Client, frontend: FakeChannel, auth: FakeChannel) -> None:
    client.tasks.get(TASK_ID).approve()
    assert auth.sent("UserLogin") == [apb.UserLoginRequest(id="alice", password="alice-password")]
    assert auth.calls[0].metadata is None  # logging in sends no token
    assert frontend.last("ApproveTask").metadata == {"id": "alice", "token": "token-1"}
    client.tasks.get(TASK_ID).invoke()
    assert len(auth.sent("UserLogin")) == 1  # one login serves every call


def test_credentials_and_client_hide_the_password(client: Client) -> None:
    assert "alice-password" not in repr(Credentials("alice", "alice-password"))
    assert "alice-password" not in repr(client)


def test_context_manager_closes_both_channels(frontend: FakeChannel, auth: FakeChannel) -> None:
    with Client(frontend, auth, Credentials("alice", "pw")) as client:
        assert client.user_id == "alice"
    assert frontend.closed and auth.closed


# --- users -------------------------------------------------------------------------------


def test_users(client: Client, auth: FakeChannel) -> None:
    auth.on("ListUsers", apb.ListUsersResponse(ids=["bob", "carol"]))
    auth.on("ResetUserPassword", apb.ResetUserPasswordResponse(password="new-secret"))
    client.users.register("bob", "bob-pw", "DataOwner", "bank_b")
    client.users.update("bob", "bob-pw2", "DataOwnerManager")
    assert client.users.list() == ["bob", "carol"]
    assert client.users.reset_password("bob") == "new-secret"
    client.users.change_my_password("alice-2")
    client.users.delete("bob")

    assert auth.sent("UserRegister") == [
        apb.UserRegisterRequest(id="bob", password="bob-pw", role="DataOwner", attribute="bank_b")
    ]
    assert auth.sent("UserUpdate") == [apb.UserUpdateRequest(id="bob", password="bob-pw2", role="DataOwnerManager")]
    assert auth.sent("ListUsers") == [apb.ListUsersRequest(id="alice")]
    assert auth.sent("ResetUserPassword") == [apb.ResetUserPasswordRequest(id="bob")]
    assert auth.sent("UserChangePassword") == [apb.UserChangePasswordRequest(password="alice-2")]
    assert auth.sent("DeleteUser") == [apb.DeleteUserRequest(id="bob")]
    assert auth.last("DeleteUser").metadata == {"id": "alice", "token": "token-1"}


# --- functions ---------------------------------------------------------------------------


def test_register_function_accepts_names_value_objects_and_teaclave_objects(
    client: Client, frontend: FakeChannel
) -> None:
    frontend.on("RegisterFunction", fe_pb.RegisterFunctionResponse(function_id=FUNCTION_ID))
    handle = client.functions.register(
        "join",
        executor="python",
        description="joins",
        payload=b"def entrypoint(argv): pass",
        arguments=["a", FunctionArgument("b", "2", allow_overwrite=False), TeaclaveFunctionArgument("c")],
        inputs=["left", FunctionFile("right", "the other side", optional=True), TeaclaveFunctionInput("extra")],
        outputs=["joined"],
        public=False,
        allowed_users=["bob"],
    )
    assert isinstance(handle, FunctionHandle) and handle.id == FUNCTION_ID
    (request,) = frontend.sent("RegisterFunction")
    assert request == fe_pb.RegisterFunctionRequest(
        name="join",
        description="joins",
        executor_type="python",
        public=False,
        payload=b"def entrypoint(argv): pass",
        arguments=[
            fe_pb.FunctionArgument(key="a", allow_overwrite=True),
            fe_pb.FunctionArgument(key="b", default_value="2", allow_overwrite=False),
            fe_pb.FunctionArgument(key="c", allow_overwrite=True),
        ],
        inputs=[
            fe_pb.FunctionInput(name="left"),
            fe_pb.FunctionInput(name="right", description="the other side", optional=True),
            fe_pb.FunctionInput(name="extra"),
        ],
        outputs=[fe_pb.FunctionOutput(name="joined")],
        user_allowlist=["bob"],
        usage_quota=-1,  # None: unlimited
    )


GET_FUNCTION = fe_pb.GetFunctionResponse(
    name="builtin-echo",
    description="echo",
    executor_type="builtin",
    owner="alice",
    public=True,
    arguments=[fe_pb.FunctionArgument(key="message", allow_overwrite=True)],
    inputs=[fe_pb.FunctionInput(name="in")],
    outputs=[fe_pb.FunctionOutput(name="out", optional=True)],
    user_allowlist=["bob"],
)


def test_function_handle_reads_a_frozen_function(client: Client, frontend: FakeChannel) -> None:
    frontend.on("GetFunction", GET_FUNCTION)
    function = client.functions.get(FUNCTION_ID).get()
    assert function == Function(
        id=FUNCTION_ID,
        name="builtin-echo",
        description="echo",
        executor_type="builtin",
        owner="alice",
        public=True,
        arguments=(FunctionArgument("message"),),
        inputs=(FunctionFile("in"),),
        outputs=(FunctionFile("out", optional=True),),
        allowed_users=("bob",),
    )
    with pytest.raises(AttributeError):
        function.name = "other"  # type: ignore[misc]
    assert frontend.sent("GetFunction") == [fe_pb.GetFunctionRequest(function_id=FUNCTION_ID)]


def test_function_update_changes_what_is_given_and_keeps_the_rest(client: Client, frontend: FakeChannel) -> None:
    frontend.on("GetFunction", GET_FUNCTION)
    frontend.on("GetFunctionUsageStats", fe_pb.GetFunctionUsageStatsResponse(function_quota=5, current_usage=2))
    frontend.on("UpdateFunction", fe_pb.UpdateFunctionResponse(function_id=FUNCTION_ID))
    client.functions.get(FUNCTION_ID).update(description="new", public=False)
    (request,) = frontend.sent("UpdateFunction")
    assert request.function_id == FUNCTION_ID
    assert (request.name, request.description, request.public, request.usage_quota) == ("builtin-echo", "new", False, 5)
    assert list(request.user_allowlist) == ["bob"]
    assert [a.key for a in request.arguments] == ["message"]
    assert [f.name for f in request.outputs] == ["out"] and request.outputs[0].optional

    client.functions.get(FUNCTION_ID).update(usage_quota=None)
    assert frontend.sent("UpdateFunction")[-1].usage_quota == -1


def test_function_usage_disable_delete_and_list(client: Client, frontend: FakeChannel) -> None:
    frontend.on("GetFunctionUsageStats", fe_pb.GetFunctionUsageStatsResponse(function_quota=-1, current_usage=3))
    frontend.on(
        "ListFunctions", fe_pb.ListFunctionsResponse(registered_functions=[FUNCTION_ID], allowed_functions=["f2"])
    )
    handle = client.functions.get(FUNCTION_ID)
    assert handle.usage() == (None, 3)
    handle.set_requirements(["gpu"])
    handle.disable()
    handle.delete()
    registered, allowed = client.functions.list()
    assert [f.id for f in registered] == [FUNCTION_ID] and [f.id for f in allowed] == ["f2"]
    assert frontend.sent("SetFunctionRequirements") == [
        cpb.FunctionRequirementsRequest(function_id=FUNCTION_ID, labels=["gpu"])
    ]
    assert frontend.last("SetFunctionRequirements").service == "Frontend"
    assert frontend.sent("DisableFunction") == [fe_pb.DisableFunctionRequest(function_id=FUNCTION_ID)]
    assert frontend.sent("DeleteFunction") == [fe_pb.DeleteFunctionRequest(function_id=FUNCTION_ID)]
    assert frontend.sent("ListFunctions") == [fe_pb.ListFunctionsRequest(user_id="alice")]


# --- files -------------------------------------------------------------------------------

KEY16 = bytes(range(16))
IV = bytes(range(12))
CMAC = bytes(range(100, 116))


@pytest.mark.parametrize(
    ("crypto", "schema", "key", "iv"),
    [
        (Crypto.aes_gcm_128(KEY16, IV), "aes-gcm-128", KEY16, IV),
        (Crypto.aes_gcm_256(bytes(32), IV), "aes-gcm-256", bytes(32), IV),
        (Crypto.teaclave_file_128(KEY16), "teaclave-file-128", KEY16, b""),
        (Crypto.raw(), "raw", b"", b""),
    ],
)
def test_register_input(
    client: Client, frontend: FakeChannel, crypto: Crypto, schema: str, key: bytes, iv: bytes
) -> None:
    frontend.on("RegisterInputFile", fe_pb.RegisterInputFileResponse(data_id="input-1"))
    handle = client.files.register_input("https://example.org/in.enc", crypto, CMAC)
    assert isinstance(handle, FileHandle) and handle.id == "input-1"
    assert frontend.sent("RegisterInputFile") == [
        fe_pb.RegisterInputFileRequest(
            url="https://example.org/in.enc",
            cmac=CMAC,
            crypto_info=common_pb.FileCryptoInfo(schema=schema, key=key, iv=iv),
        )
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Crypto.aes_gcm_128(bytes(15), IV),
        lambda: Crypto.aes_gcm_128(KEY16, bytes(11)),
        lambda: Crypto.aes_gcm_256(KEY16, IV),
        lambda: Crypto.teaclave_file_128(bytes(32)),
        lambda: Crypto("teaclave-file-128", KEY16, IV),
        lambda: Crypto("rot13"),
    ],
)
def test_crypto_checks_sizes_and_schema(make) -> None:
    with pytest.raises(InvalidArgumentError):
        make()


def test_crypto_hides_its_key_and_makes_fresh_ivs() -> None:
    crypto = Crypto.aes_gcm_128(KEY16)
    assert KEY16.hex() not in repr(crypto) and repr(list(KEY16)) not in repr(crypto)
    assert len(crypto.iv) == 12 and crypto.iv != Crypto.aes_gcm_128(KEY16).iv


def test_register_outputs_and_read_files(client: Client, frontend: FakeChannel) -> None:
    frontend.on("RegisterOutputFile", fe_pb.RegisterOutputFileResponse(data_id="output-1"))
    frontend.on("RegisterFusionOutput", fe_pb.RegisterFusionOutputResponse(data_id="output-2"))
    frontend.on("RegisterInputFromOutput", fe_pb.RegisterInputFromOutputResponse(data_id="input-2"))
    frontend.on("GetOutputFile", fe_pb.GetOutputFileResponse(owner=["alice"]))
    frontend.on("GetInputFile", fe_pb.GetInputFileResponse(owner=["alice", "bob"], cmac=CMAC))
    frontend.on("UpdateInputFile", fe_pb.UpdateInputFileResponse(data_id="input-3"))
    frontend.on("UpdateOutputFile", fe_pb.UpdateOutputFileResponse(data_id="output-3"))

    crypto = Crypto.aes_gcm_256(bytes(32), IV)
    output = client.files.register_output("https://example.org/out.enc", crypto)
    assert frontend.sent("RegisterOutputFile") == [
        fe_pb.RegisterOutputFileRequest(
            url="https://example.org/out.enc",
            crypto_info=common_pb.FileCryptoInfo(schema="aes-gcm-256", key=bytes(32), iv=IV),
        )
    ]
    assert output.get() == File(id="output-1", owners=frozenset({"alice"}), cmac=None)
    fusion = client.files.register_fusion_output(["alice", "bob"])
    assert fusion.id == "output-2"
    assert frontend.sent("RegisterFusionOutput") == [fe_pb.RegisterFusionOutputRequest(owner_list=["alice", "bob"])]
    reused = client.files.register_input_from_output(fusion)
    assert frontend.sent("RegisterInputFromOutput") == [fe_pb.RegisterInputFromOutputRequest(data_id="output-2")]
    file = reused.get()
    assert file == File(id="input-2", owners=frozenset({"alice", "bob"}), cmac=CMAC) and file.is_input
    assert frontend.sent("GetInputFile") == [fe_pb.GetInputFileRequest(data_id="input-2")]
    assert reused.update_url("https://example.org/moved").id == "input-3"
    assert output.update_url("https://example.org/moved-out").id == "output-3"
    assert frontend.sent("UpdateOutputFile") == [
        fe_pb.UpdateOutputFileRequest(data_id="output-1", url="https://example.org/moved-out")
    ]


# --- tasks -------------------------------------------------------------------------------


def test_create_task(client: Client, frontend: FakeChannel) -> None:
    frontend.on("CreateTask", fe_pb.CreateTaskResponse(task_id=TASK_ID))
    frontend.on("GetFunction", fe_pb.GetFunctionResponse(executor_type="python"))
    handle = client.tasks.create(
        client.functions.get(FUNCTION_ID),
        {"message": "hi", "n": 2},
        inputs_ownership={"left": "bob", "right": ["alice", "carol"]},
        outputs_ownership={"out": ["alice"]},
    )
    assert isinstance(handle, TaskHandle) and handle.id == TASK_ID
    (request,) = frontend.sent("CreateTask")
    assert request.function_id == FUNCTION_ID
    assert json.loads(request.function_arguments) == {"message": "hi", "n": 2}
    assert request.executor == "mesapy"  # what runs a python function, from GetFunction
    assert list(request.inputs_ownership) == [
        fe_pb.OwnerList(data_name="left", uids=["bob"]),
        fe_pb.OwnerList(data_name="right", uids=["alice", "carol"]),
    ]
    assert list(request.outputs_ownership) == [fe_pb.OwnerList(data_name="out", uids=["alice"])]

    client.tasks.create(FUNCTION_ID, executor="builtin")
    assert frontend.sent("CreateTask")[-1].executor == "builtin"
    assert frontend.sent("CreateTask")[-1].function_arguments == "{}"
    assert len(frontend.sent("GetFunction")) == 1  # an explicit executor needs no look-up

    frontend.on("RegisterFunction", fe_pb.RegisterFunctionResponse(function_id=FUNCTION_ID))
    registered = client.functions.register("f", executor="wasm")
    client.tasks.create(registered)  # the registering handle knows its type: no look-up either
    assert frontend.sent("CreateTask")[-1].executor == "wamr"
    assert len(frontend.sent("GetFunction")) == 1


def test_task_handle_calls(client: Client, frontend: FakeChannel) -> None:
    task = client.tasks.get(TASK_ID)
    frontend.on("RegisterInputFile", fe_pb.RegisterInputFileResponse(data_id="input-1"))
    left = client.files.register_input("https://example.org/in", Crypto.raw(), CMAC)
    task.assign(inputs={"left": left}, outputs={"out": "output-1"})
    task.approve()
    task.invoke()
    task.cancel()
    assert frontend.sent("AssignData") == [
        fe_pb.AssignDataRequest(
            task_id=TASK_ID,
            inputs=[fe_pb.DataMap(data_name="left", data_id="input-1")],
            outputs=[fe_pb.DataMap(data_name="out", data_id="output-1")],
        )
    ]
    assert frontend.sent("ApproveTask") == [fe_pb.ApproveTaskRequest(task_id=TASK_ID)]
    assert frontend.sent("InvokeTask") == [fe_pb.InvokeTaskRequest(task_id=TASK_ID)]
    assert frontend.sent("CancelTask") == [fe_pb.CancelTaskRequest(task_id=TASK_ID)]


def test_describe_a_new_task_has_every_field(client: Client, frontend: FakeChannel) -> None:
    # MessageToDict drops fields at their default; the view never does (status 0 is Created).
    frontend.on(
        "GetTask",
        task_message(
            function_id=FUNCTION_ID,
            function_owner="alice",
            function_arguments='{"message":"hi"}',
            inputs_ownership=[fe_pb.OwnerList(data_name="left", uids=["bob"])],
            participants=["alice", "bob"],
            approved_users=["alice"],
            assigned_inputs=[fe_pb.DataMap(data_name="left", data_id="input-1")],
        ),
    )
    task = client.tasks.get(TASK_ID).describe()
    assert isinstance(task, Task)
    assert task.status is TaskStatus.CREATED and task.status.name == "CREATED"
    assert task.arguments == {"message": "hi"}
    assert task.inputs_ownership == {"left": frozenset({"bob"})}
    assert task.assigned_inputs == {"left": "input-1"}
    assert task.missing_approvals == frozenset({"bob"})
    assert task.result is None and task.failure is None and task.waiting_reason is None
    assert client.tasks.get(TASK_ID).status() is TaskStatus.CREATED


def test_list_tasks_reads_every_page(client: Client, frontend: FakeChannel) -> None:
    pages = {
        "": cpb.ListTasksResponse(
            tasks=[task_message(task_id="task-a"), task_message(task_id="task-b")], next_page_token="p2"
        ),
        "p2": cpb.ListTasksResponse(tasks=[task_message(task_id="task-c", status=10)]),
    }
    frontend.on("ListTasks", lambda request: pages[request.page_token])
    tasks = client.tasks.list()
    assert [t.id for t in tasks] == ["task-a", "task-b", "task-c"]
    assert tasks[2].status is TaskStatus.FINISHED
    first, second = frontend.sent("ListTasks")
    assert first == cpb.ListTasksRequest(page_size=100)
    assert second == cpb.ListTasksRequest(page_size=100, page_token="p2")
    assert frontend.last("ListTasks").service == "Frontend"  # the cloister extension


def test_list_tasks_filters(client: Client, frontend: FakeChannel) -> None:
    frontend.on("ListTasks", cpb.ListTasksResponse())
    assert client.tasks.list(awaiting_my_approval=True) == []
    client.tasks.list(status=TaskStatus.STAGED)
    client.tasks.list(status=[TaskStatus.FINISHED, TaskStatus.FAILED])
    inbox, staged, ended = frontend.sent("ListTasks")
    assert inbox.awaiting_my_approval and list(inbox.statuses) == []
    assert list(staged.statuses) == [3]
    assert list(ended.statuses) == [10, 99]


def test_list_only_lists_your_tasks(client: Client, frontend: FakeChannel) -> None:
    with pytest.raises(InvalidArgumentError, match="administrators included"):
        client.tasks.list(mine=False)
    assert frontend.calls == []


# --- audit -------------------------------------------------------------------------------


def _record(seq: int, message: str) -> cpb.AuditRecord:
    entry = common_pb.Entry(microsecond=seq * 1_000_000, ip=bytes(15) + b"\x01", user="u", message=message, result=True)
    return cpb.AuditRecord(seq=seq, entry=entry)


def test_audit_query_sends_the_cursor_and_returns_a_page(client: Client, frontend: FakeChannel) -> None:
    frontend.on(
        "QueryAuditPage",
        cpb.QueryAuditPageResponse(records=[_record(8, "get_task")], next_after=9, head=12, cut_through=3),
    )
    page = client.audit.query("message:get_task", limit=5, after=7)
    assert frontend.sent("QueryAuditPage") == [cpb.QueryAuditPageRequest(query="message:get_task", limit=5, after=7)]
    assert frontend.last("QueryAuditPage").service == "Frontend"  # the cloister extension
    assert [(r.seq, r.entry.message, r.entry.result) for r in page.records] == [(8, "get_task", True)]
    assert (page.next_after, page.head, page.cut_through, page.caught_up) == (9, 12, 3, False)


def test_audit_entries_follow_the_cursor_until_caught_up(client: Client, frontend: FakeChannel) -> None:
    pages = {
        0: cpb.QueryAuditPageResponse(records=[_record(1, "a"), _record(2, "b")], next_after=2, head=5),
        2: cpb.QueryAuditPageResponse(records=[], next_after=4, head=5),  # a page of non-matches
        4: cpb.QueryAuditPageResponse(records=[_record(5, "c")], next_after=5, head=5),
    }
    frontend.on("QueryAuditPage", lambda request: pages[request.after])
    assert [r.seq for r in client.audit.entries("x", after=0)] == [1, 2, 5]
    assert [r.after for r in frontend.sent("QueryAuditPage")] == [0, 2, 4]
    assert {r.limit for r in frontend.sent("QueryAuditPage")} == {1000}


def test_audit_newest_is_teaclaves_query(client: Client, frontend: FakeChannel) -> None:
    frontend.on("QueryAuditLogs", fe_pb.QueryAuditLogsResponse(logs=[_record(2, "b").entry, _record(1, "a").entry]))
    newest = client.audit.newest("user:u", limit=2)
    assert [e.message for e in newest] == ["b", "a"]
    assert frontend.sent("QueryAuditLogs") == [fe_pb.QueryAuditLogsRequest(query="user:u", limit=2)]
    assert frontend.last("QueryAuditLogs").service == "TeaclaveFrontend"


def test_errors_reach_the_caller_as_raised(client: Client, frontend: FakeChannel) -> None:
    def refuse(_request: object) -> None:
        raise InvalidTaskIdError()

    frontend.on("GetTask", refuse)
    with pytest.raises(InvalidTaskIdError):
        client.tasks.get("task-nope").describe()


def test_trust_from_missing_files_says_which(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"as_root_ca\.pem"):
        Trust.from_files(tmp_path / "as_root_ca.pem", tmp_path / "enclave_info.toml")


def test_trust_from_a_state_dir_nothing_started_in_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no Cloister has been started with state directory"):
        Trust.from_state_dir(tmp_path)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("frontend.example:9000", ("frontend.example", 9000)),
        ("frontend.example", ("frontend.example", 7777)),
        ("[::1]:7000", ("[::1]", 7000)),
        ("[::1]", ("[::1]", 7777)),
    ],
)
def test_frontend_addresses(address: str, expected: tuple[str, int]) -> None:
    assert _split(address, 7777) == expected


def test_a_malformed_address_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="HOST:PORT"):
        _split("frontend:http", 7777)
