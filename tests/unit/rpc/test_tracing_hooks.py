"""Tracing hooks: inert unless configured; when configured, a server span continues its caller's trace."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from staged_tasks import echo_task

from cloister.config import TracingSettings, load_settings
from cloister.errors import ConfigurationError
from cloister.model.tasks import StagedElement
from cloister.rpc import tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "spans.jsonl"
    tracing.configure(TracingSettings(file=path), "unit")
    yield path
    tracing.shutdown()


def test_off_by_default_every_hook_is_inert(tmp_path: Path) -> None:
    tracing.configure(load_settings(None, {}, state_dir=tmp_path).tracing, "unit")
    assert not tracing.enabled()
    with tracing.client_span("storage", "Read", (("id", "alice"),)) as sent:
        assert sent == (("id", "alice"),)
    with tracing.server_span("storage", "Read", (("traceparent", TRACEPARENT),)) as span:
        assert span is None
    assert tracing.current_traceparent() == ""


def test_a_server_span_continues_the_callers_trace(spans_file: Path) -> None:
    with tracing.span("caller"), tracing.client_span("storage", "Read", (("id", "alice"),)) as sent:
        assert sent is not None and sent[0] == ("id", "alice")
        carried = dict(sent)["traceparent"]
        with tracing.server_span("storage", "Read", sent) as span:
            tracing.set_outcome(span, "NOT_FOUND")
    tracing.shutdown()

    spans = {s["name"]: s for s in tracing.read_spans(spans_file)}
    caller, client, server = spans["caller"], spans["storage/Read"], None
    server = next(s for s in tracing.read_spans(spans_file) if s["kind"] == "SERVER")
    assert client["kind"] == "CLIENT" and client["parent_id"] == caller["span_id"]
    assert server["parent_id"] == client["span_id"] == carried.split("-")[2]
    assert server["trace_id"] == caller["trace_id"] == carried.split("-")[1]
    assert server["status"] == "ERROR" and server["attributes"]["rpc.grpc.status"] == "NOT_FOUND"
    assert "alice" not in spans_file.read_text()


def test_a_cancelled_call_is_not_an_error(spans_file: Path) -> None:
    with tracing.server_span("scheduler", "PullTaskWait", ()) as span:
        tracing.set_outcome(span, "CANCELLED")
    tracing.shutdown()
    (server,) = tracing.read_spans(spans_file)
    assert server["status"] == "UNSET" and server["parent_id"] == ""


def test_a_span_joins_a_carried_traceparent(spans_file: Path) -> None:
    with tracing.span("execution/task", parent=TRACEPARENT):
        assert tracing.current_traceparent().split("-")[1] == TRACEPARENT.split("-")[1]
    tracing.shutdown()
    (run,) = tracing.read_spans(spans_file)
    assert run["trace_id"] == TRACEPARENT.split("-")[1] and run["parent_id"] == TRACEPARENT.split("-")[2]


def test_a_malformed_traceparent_starts_a_new_trace(spans_file: Path) -> None:
    with tracing.server_span("frontend", "GetTask", (("traceparent", "00-zz-not-a-trace"),)):
        pass
    tracing.shutdown()
    (server,) = tracing.read_spans(spans_file)
    assert server["parent_id"] == "" and len(server["trace_id"]) == 32


def test_read_spans_skips_a_torn_last_line(spans_file: Path) -> None:
    with tracing.span("whole"):
        pass
    tracing.shutdown()
    with spans_file.open("a") as f:
        f.write('{"name": "torn", "trace')
    assert [s["name"] for s in tracing.read_spans(spans_file)] == ["whole"]


def test_the_staged_task_carries_the_trace_across_the_queue() -> None:
    element = StagedElement(echo_task(trace=TRACEPARENT))
    assert StagedElement.from_json(element.to_json()).staged.trace == TRACEPARENT
    assert "trace" not in StagedElement(echo_task()).to_json()
    assert "trace" not in element.staged.to_json(), "never in Teaclave's staged-task JSON"


def test_an_overlong_trace_in_a_queue_element_is_dropped() -> None:
    data = StagedElement(echo_task()).to_json()
    data["trace"] = "x" * 10_000
    assert StagedElement.from_json(data).staged.trace == ""


def test_a_collector_must_be_an_http_url(tmp_path: Path) -> None:
    with pytest.raises((ValidationError, ConfigurationError), match="http"):
        load_settings(None, {"CLOISTER_TRACING__OTLP_ENDPOINT": "file:///etc/passwd"}, state_dir=tmp_path)
    settings = load_settings(
        None, {"CLOISTER_TRACING__OTLP_ENDPOINT": "http://collector:4318/v1/traces"}, state_dir=tmp_path
    )
    assert settings.tracing.otlp_endpoint == "http://collector:4318/v1/traces"


def test_a_collector_without_the_exporter_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)  # not installed
    with pytest.raises(ConfigurationError, match=r"cloister\[otlp\]"):
        tracing.configure(TracingSettings(otlp_endpoint="http://127.0.0.1:4318/v1/traces"), "unit")
    assert not tracing.enabled()
