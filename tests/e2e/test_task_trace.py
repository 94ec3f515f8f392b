"""Per-hop tracing: one task's calls across every service form one trace, and spans carry no tenant data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import admin

from cloister.config import TracingSettings
from cloister.errors import CloisterError
from cloister.rpc import tracing
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform, start_platform

SECRET = "confidential-argument-7731"


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[RunningPlatform, Path]]:
    spans = tmp_path / "spans.jsonl"
    (tmp_path / "state").mkdir()
    platform = start_platform(tmp_path / "state", env={"CLOISTER_TRACING__FILE": str(spans)})
    tracing.configure(TracingSettings(file=spans), "test-client")
    try:
        yield platform, spans
    finally:
        tracing.shutdown()
        platform.stop()


def test_a_task_is_one_trace_across_every_service(traced: tuple[RunningPlatform, Path]) -> None:
    platform, path = traced
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    with tracing.span("client/task"):
        task_id = root.frontend.create_task(function_id, {"message": SECRET}, "builtin")
        root.frontend.invoke_task(task_id)
        assert root.frontend.get_task_result(task_id) == SECRET.encode()
    root.close()
    tracing.shutdown()  # the client's spans are written now; the services' when they stop
    platform.stop()

    spans = tracing.read_spans(path)
    (task_span,) = [s for s in spans if s["name"] == "client/task"]
    trace = [s for s in spans if s["trace_id"] == task_span["trace_id"]]
    served = {(s["service"], s["name"]) for s in trace if s["kind"] == "SERVER"}
    for hop in [
        ("cloister-frontend", "frontend/CreateTask"),
        ("cloister-frontend", "frontend/InvokeTask"),
        ("cloister-management", "management/InvokeTask"),
        ("cloister-access_control", "access_control/Authorize"),
        ("cloister-storage", "storage/Commit"),
        ("cloister-scheduler", "scheduler/ConfirmTask"),
        ("cloister-scheduler", "scheduler/ReportTaskResult"),
    ]:
        assert hop in served, f"{hop} is missing from the task's trace: {sorted(served)}"
    assert any(s["name"] == "execution/task" and s["service"] == "cloister-execution" for s in trace)

    ids = {s["span_id"] for s in trace}
    orphans = [s["name"] for s in trace if s["parent_id"] and s["parent_id"] not in ids]
    assert orphans == [], "every hop's parent is in the same trace"
    assert all(s["end_ns"] >= s["start_ns"] for s in trace)

    text = path.read_text()
    assert SECRET not in text
    assert platform.admin_user not in json.dumps([s["attributes"] for s in spans])


def test_spans_record_a_refused_call_as_an_error(traced: tuple[RunningPlatform, Path]) -> None:
    platform, path = traced
    root = admin(platform)
    with tracing.span("client/bad"), pytest.raises(CloisterError):
        root.frontend.get_task("00000000-0000-0000-0000-000000000000")
    root.close()
    tracing.shutdown()
    platform.stop()

    spans = tracing.read_spans(path)
    (bad,) = [s for s in spans if s["name"] == "client/bad"]
    (served,) = [
        s
        for s in spans
        if s["trace_id"] == bad["trace_id"] and s["name"] == "frontend/GetTask" and s["kind"] == "SERVER"
    ]
    assert served["status"] == "ERROR"
    assert served["attributes"]["rpc.grpc.status"] != "OK"
