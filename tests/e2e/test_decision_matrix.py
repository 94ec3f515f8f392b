"""Every frontend RPC, called by every kind of caller, answers as data/decision_matrix.csv says.

The table is the specification: one row per RPC, one column per caller, each cell exercised
against running services. The scenario (who owns what) is in data/decision_cast.csv.
"""

from __future__ import annotations

import base64
import csv
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Session, admin, login
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from http_fixture_server import FixtureHTTPServer

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import teaclave_frontend_service_pb2 as fpb
from cloister.errors import AccessDeniedError, AuthenticationError, CloisterError
from cloister.sdk import DataMap, FrontendService, FunctionArgument, FunctionInput, FunctionOutput, OwnerList
from cloister.sdk._channel import CLOISTER_FRONTEND
from cloister.services.authentication.tokens import KEY_FILE_NAME, SECRET_LENGTH, JWTIssuer
from cloister.testing import RunningPlatform

DATA = Path(__file__).parent / "data"
KEY, IV = bytes(range(16)), bytes(range(12))
WRITER = b"""
def entrypoint(argv):
    with teaclave_open("out", "wb") as f:
        f.write(b"written")
    return "ok"
"""


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


MATRIX = _rows("decision_matrix.csv")
CAST = {row.pop("family"): row for row in _rows("decision_cast.csv")}
CALLERS = [c for c in MATRIX[0] if c not in ("rpc", "family")]
USERS = {"fowner": ("FunctionOwner", ""), "partner": ("DataOwner", "orgB"), "creator": ("DataOwner", "orgA")}
USERS["other"] = ("DataOwner", "orgC")


@dataclass
class World:
    """The objects of decision_cast.csv, and fresh copies for calls that change them."""

    platform: RunningPlatform
    server: FixtureHTTPServer
    sessions: dict[str, Session] = field(default_factory=dict)
    strangers: dict[str, FrontendService] = field(default_factory=dict)
    """Clients without valid credentials: anonymous, expired_token, forged_token."""
    ids: dict[str, str] = field(default_factory=dict)

    def as_(self, user: str) -> FrontendService:
        return self.sessions[user].frontend

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        for client in self.strangers.values():
            client.close()

    def input_url(self) -> tuple[str, bytes]:
        sealed = AESGCM(KEY).encrypt(IV, b"input of partner", bytes(8))
        return "data:text/plain;base64," + base64.b64encode(sealed).decode(), sealed[-16:]

    def private_function(self) -> str:
        return self.as_("fowner").register_function(
            "builtin-echo",
            "private",
            "builtin",
            public=False,
            arguments=[FunctionArgument("message")],
            user_allowlist=["partner", "orgA"],
        )

    def task(self, progress: str) -> str:
        """A task of creator's on P with partner's input: ``created``, ``assigned`` or ``approved``."""
        task_id = self.as_("creator").create_task(
            self.ids["P"], {"message": "hi"}, "builtin", inputs_ownership=[OwnerList("in_b", ["partner"])]
        )
        if progress in ("assigned", "approved"):
            self.as_("partner").assign_data_to_task(task_id, inputs=[DataMap("in_b", self.ids["IB"])])
        if progress == "approved":
            for participant in ("creator", "partner", "fowner"):
                self.as_(participant).approve_task(task_id)
        return task_id


def _build(platform: RunningPlatform, server: FixtureHTTPServer) -> World:
    world = World(platform, server)
    root = admin(platform)
    world.sessions["admin"] = root
    world.strangers = _strangers(platform)
    for user, (role, attribute) in USERS.items():
        root.auth.user_register(user, f"{user}-password", role, attribute)
        world.sessions[user] = login(platform, user, f"{user}-password")
    fowner, partner = world.as_("fowner"), world.as_("partner")
    world.ids["F"] = world.private_function()
    world.ids["P"] = fowner.register_function(
        "builtin-echo",
        "private, used by the tasks",
        "builtin",
        public=False,
        arguments=[FunctionArgument("message")],
        inputs=[FunctionInput("in_b")],
        user_allowlist=["orgA"],
    )
    url, cmac = world.input_url()
    world.ids["IB"] = partner.register_input_file(url, "aes-gcm-128", KEY, IV, cmac)
    world.ids["OB"] = partner.register_output_file(server.url("ob"), "aes-gcm-128", KEY, IV)
    world.ids["T"] = world.task("approved")
    # OW: an output partner's own task has written, so it can become an input.
    writer = fowner.register_function("writer", "", "python", payload=WRITER, outputs=[FunctionOutput("out")])
    world.ids["OW"] = partner.register_output_file(server.url("ow"), "aes-gcm-128", KEY, IV)
    task_id = partner.create_task(writer, {}, "python", outputs_ownership=[OwnerList("out", ["partner"])])
    partner.assign_data_to_task(task_id, outputs=[DataMap("out", world.ids["OW"])])
    partner.invoke_task(task_id)
    assert partner.get_task_result(task_id) == b"ok"
    return world


CALLS: dict[str, Callable[[FrontendService, World], object]] = {
    "register_function": lambda c, w: c.register_function("builtin-echo", "new", "builtin"),
    "update_function": lambda c, w: c.update_function(w.private_function(), "builtin-echo", "changed", "builtin"),
    "get_function": lambda c, w: c.get_function(w.ids["F"]),
    "get_function_usage_stats": lambda c, w: c.get_function_usage_stats(w.ids["F"]),
    "delete_function": lambda c, w: c.delete_function(w.private_function()),
    "disable_function": lambda c, w: c.disable_function(w.private_function()),
    "list_functions": lambda c, w: c.list_functions("fowner"),
    "set_function_requirements": lambda c, w: c.set_function_requirements(w.ids["F"], []),
    "create_task": lambda c, w: c.create_task(w.ids["F"], {"message": "hi"}, "builtin"),
    "register_input_file": lambda c, w: c.register_input_file(w.input_url()[0], "aes-gcm-128", KEY, IV, bytes(16)),
    "register_output_file": lambda c, w: c.register_output_file(w.server.url("new"), "aes-gcm-128", KEY, IV),
    "update_input_file": lambda c, w: c.update_input_file(w.ids["IB"], w.input_url()[0]),
    "update_output_file": lambda c, w: c.update_output_file(w.ids["OB"], w.server.url("moved")),
    "register_fusion_output": lambda c, w: c.register_fusion_output(["partner", "creator"]),
    "register_input_from_output": lambda c, w: c.register_input_from_output(w.ids["OW"]),
    "get_input_file": lambda c, w: c.get_input_file(w.ids["IB"]),
    "get_output_file": lambda c, w: c.get_output_file(w.ids["OB"]),
    "get_task": lambda c, w: c.get_task(w.ids["T"]),
    "wait_task": lambda c, w: c.wait_task(w.ids["T"], timeout=0),
    "get_task_receipt": lambda c, w: c._call(
        "GetTaskReceipt", cpb.GetTaskReceiptRequest(task_id=w.ids["T"]), service=CLOISTER_FRONTEND
    ),
    "assign_data": lambda c, w: c.assign_data_to_task(w.task("created"), inputs=[DataMap("in_b", w.ids["IB"])]),
    "approve_task": lambda c, w: c.approve_task(w.task("assigned")),
    "invoke_task": lambda c, w: c.invoke_task(w.task("approved")),
    "cancel_task": lambda c, w: c.cancel_task(w.task("created")),
    "reject_task": lambda c, w: c._call(
        "RejectTask", cpb.RejectTaskRequest(task_id=w.task("created")), service=CLOISTER_FRONTEND
    ),
    # Everyone who may call it is answered, with only their own tasks (test_list_tasks.py).
    "list_tasks": lambda c, w: c._call("ListTasks", cpb.ListTasksRequest(), service=CLOISTER_FRONTEND),
    "query_audit_logs": lambda c, w: c.query_audit_logs("get_task", 1),
    "query_audit_page": lambda c, w: c._call(
        "QueryAuditPage", cpb.QueryAuditPageRequest(query="get_task", limit=1), service=CLOISTER_FRONTEND
    ),
}


def _strangers(platform: RunningPlatform) -> dict[str, FrontendService]:
    """An admin's id with an expired token (issued in 1970 with the platform's own key) and with
    a token signed by another key, and no credentials at all."""
    admin_id = platform.admin_user
    secret = (platform.state_dir / "authentication" / KEY_FILE_NAME).read_bytes()
    forger = JWTIssuer(os.urandom(SECRET_LENGTH))
    metadata = {
        "anonymous": {"id": "", "token": ""},  # the SDK sends nothing without some metadata
        "expired_token": {"id": admin_id, "token": JWTIssuer(secret).issue(admin_id, "PlatformAdmin", "any", 0)},
        "forged_token": {"id": admin_id, "token": forger.issue(admin_id, "PlatformAdmin", "any", time.time())},
    }
    clients = {}
    for caller, fields in metadata.items():
        clients[caller] = FrontendService(*platform.connection_args("frontend"))
        clients[caller].metadata = fields
    return clients


def _client(world: World, caller: str, family: str) -> FrontendService:
    if caller in CAST[family]:
        return world.as_(CAST[family][caller])
    return world.strangers[caller]


def _outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except AuthenticationError:
        return "unauthenticated"
    except AccessDeniedError as exc:
        return "denied" if exc.message == "permission denied" else f"denied ({exc.message})"
    except CloisterError as exc:
        return f"{exc.status.name}: {exc.message}"
    return "ok"


@pytest.fixture(scope="module")
def world(platform: RunningPlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with FixtureHTTPServer(tmp_path_factory.mktemp("served")) as server:
        built = _build(platform, server)
        yield built
        built.close()


def test_the_table_covers_every_frontend_rpc() -> None:
    services = (fpb.DESCRIPTOR.services_by_name["TeaclaveFrontend"], cpb.DESCRIPTOR.services_by_name["Frontend"])
    rpcs = {re.sub(r"(?<!^)(?=[A-Z])", "_", m.name).lower() for s in services for m in s.methods}
    assert rpcs == {row["rpc"] for row in MATRIX} == set(CALLS)
    assert set(CALLERS) == {"anonymous", "expired_token", "forged_token"} | set(next(iter(CAST.values())))


@pytest.mark.parametrize("row", MATRIX, ids=[row["rpc"] for row in MATRIX])
def test_decisions(world: World, row: dict[str, str]) -> None:
    call = CALLS[row["rpc"]]
    answered = {}
    for caller in CALLERS:
        client = _client(world, caller, row["family"])
        answered[caller] = _outcome(lambda client=client: call(client, world))
    expected = {caller: row[caller] for caller in CALLERS}
    assert answered == expected
