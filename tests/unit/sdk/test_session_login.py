"""Logins: a refused token is renewed once with the credentials; a second refusal is the answer."""

from __future__ import annotations

import pytest
from fake_channel import FakeChannel

from cloister import Client, Credentials
from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import AccessDeniedError, AttestationError, AuthenticationError, UserExistsError

TASK_ID = "task-00000000-0000-0000-0000-000000000001"


def _tokens(*tokens: str) -> FakeChannel:
    """An authentication API that hands out ``tokens`` in turn."""
    pending = list(tokens)
    return FakeChannel().on("UserLogin", lambda _r: apb.UserLoginResponse(token=pending.pop(0)))


def _accepting(token: str) -> FakeChannel:
    """A frontend that accepts only ``token``, as it does once an older one has expired."""

    def get_task(_request: object) -> fe_pb.GetTaskResponse:
        if frontend.calls[-1].metadata != {"id": "alice", "token": token}:
            raise AuthenticationError("incorrent credential")
        return fe_pb.GetTaskResponse(task_id=TASK_ID)

    frontend = FakeChannel().on("GetTask", get_task)
    return frontend


def test_an_expired_token_is_renewed_once_and_the_call_retried() -> None:
    auth = _tokens("old", "new")
    frontend = _accepting("new")
    client = Client(frontend, auth, Credentials("alice", "pw"))
    client.login()
    assert client.tasks.get(TASK_ID).describe().id == TASK_ID
    assert [c.metadata for c in frontend.calls] == [{"id": "alice", "token": t} for t in ("old", "new")]
    assert len(auth.sent("UserLogin")) == 2
    client.tasks.get(TASK_ID).describe()
    assert len(auth.sent("UserLogin")) == 2  # the new token serves what follows


def test_a_second_refusal_is_the_answer() -> None:
    auth = _tokens("t1", "t2", "t3")
    frontend = _accepting("never")
    client = Client(frontend, auth, Credentials("alice", "pw"))
    with pytest.raises(AuthenticationError, match="incorrent credential"):
        client.tasks.get(TASK_ID).describe()
    assert len(frontend.calls) == 2 and len(auth.sent("UserLogin")) == 2


def test_a_refused_login_while_renewing_raises_the_original_refusal() -> None:
    def login(request: apb.UserLoginRequest) -> apb.UserLoginResponse:
        if len(auth.calls) > 1:
            raise AuthenticationError("authentication failed")  # the password was changed meanwhile
        return apb.UserLoginResponse(token="old")

    auth = FakeChannel().on("UserLogin", login)
    frontend = _accepting("new")
    with pytest.raises(AuthenticationError, match="incorrent credential"):
        Client(frontend, auth, Credentials("alice", "pw")).tasks.get(TASK_ID).describe()
    assert len(frontend.calls) == 1


def test_authentication_api_calls_are_renewed_too() -> None:
    auth = _tokens("old", "new")

    def list_users(_request: object) -> apb.ListUsersResponse:
        if auth.calls[-1].metadata != {"id": "alice", "token": "new"}:
            raise AuthenticationError()
        return apb.ListUsersResponse(ids=["bob"])

    auth.on("ListUsers", list_users)
    assert Client(FakeChannel(), auth, Credentials("alice", "pw")).users.list() == ["bob"]


@pytest.mark.parametrize(
    "error", [AccessDeniedError("permission denied"), AttestationError("bad report"), UserExistsError()]
)
def test_other_errors_are_not_retried(error: Exception) -> None:
    auth = _tokens("t1", "t2")

    def refuse(_request: object) -> None:
        raise error

    frontend = FakeChannel().on("GetTask", refuse)
    with pytest.raises(type(error)):
        Client(frontend, auth, Credentials("alice", "pw")).tasks.get(TASK_ID).describe()
    assert len(frontend.calls) == 1 and len(auth.sent("UserLogin")) == 1


def test_wrong_credentials_fail_the_login() -> None:
    def refuse(_request: object) -> None:
        raise AuthenticationError("authentication failed")

    client = Client(FakeChannel(), FakeChannel().on("UserLogin", refuse), Credentials("alice", "wrong"))
    with pytest.raises(AuthenticationError):
        client.login()
