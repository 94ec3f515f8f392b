"""Per-hop spans (OpenTelemetry), off unless ``[tracing]`` names a file or a collector.

Every call a service answers is a server span whose parent is the caller's W3C
``traceparent`` metadata, and every call it makes to a peer is a client span that sends its
own ``traceparent`` on, so the hops of one request across services form one trace. A span
names the endpoint, the method and the outcome, nothing else: no user, key, argument or
payload ever becomes an attribute.

Disabled, each hook is one check of a module global: nothing is imported from the SDK and no
metadata is added.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloister.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from cloister.config import TracingSettings

_CARRIED = frozenset({"traceparent", "tracestate"})
_tracer: Tracer | None = None
_provider: Any = None
_propagator: TraceContextTextMapPropagator | None = None


def enabled() -> bool:
    return _tracer is not None


def configure(settings: TracingSettings, service: str) -> None:
    """Export this process's spans where ``settings`` say; do nothing when they name no destination."""
    global _tracer, _provider, _propagator
    if settings.file is None and settings.otlp_endpoint is None:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"cloister-{service}", "service.instance.id": str(os.getpid())})
    )
    if settings.file is not None:
        from cloister.rpc.span_file import JsonLinesExporter

        provider.add_span_processor(BatchSpanProcessor(JsonLinesExporter(settings.file), schedule_delay_millis=500))
    if settings.otlp_endpoint is not None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigurationError(
                "[tracing] otlp_endpoint needs the OTLP exporter: pip install 'cloister[otlp]'"
            ) from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    _provider, _propagator = provider, TraceContextTextMapPropagator()
    _tracer = provider.get_tracer("cloister")


def shutdown() -> None:
    """Export what is buffered and stop tracing (spans of a process killed outright are lost)."""
    global _tracer, _provider, _propagator
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = _propagator = None


@contextlib.contextmanager
def server_span(endpoint: str, method: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> Iterator[Any]:
    """The span of one call this service answers, current while it runs; None when tracing is off."""
    if _tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    assert _propagator is not None
    carrier = {key: value for key, value in metadata or () if key in _CARRIED and isinstance(value, str)}
    parent = _propagator.extract(carrier)
    with _tracer.start_as_current_span(
        f"{endpoint}/{method}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": endpoint, "rpc.method": method},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def set_outcome(span: Any, outcome: str) -> None:
    """Record a call's gRPC status name on its span (an error status unless OK or CANCELLED)."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("rpc.grpc.status", outcome)
    if outcome not in ("OK", "CANCELLED"):
        span.set_status(Status(StatusCode.ERROR, outcome))


@contextlib.contextmanager
def client_span(
    service: str, method: str, metadata: Sequence[tuple[str, str | bytes]] | None
) -> Iterator[tuple[tuple[str, str | bytes], ...] | None]:
    """A span around one call to ``service``; yields ``metadata`` with the span's ``traceparent`` added."""
    if _tracer is None:
        yield tuple(metadata) if metadata is not None else None
        return
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    assert _propagator is not None
    with _tracer.start_as_current_span(
        f"{service}/{method}",
        kind=SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        record_exception=False,
    ) as span:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(span))
        yield (*(metadata or ()), *carrier.items())


@contextlib.contextmanager
def span(name: str, parent: str | None = None) -> Iterator[None]:
    """A span of work inside a service (running a task, say), under ``parent`` (a ``traceparent``) if given."""
    if _tracer is None:
        yield
        return
    assert _propagator is not None
    context = _propagator.extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(name, context=context, record_exception=False):
        yield


def current_traceparent() -> str:
    """The ``traceparent`` of the current span, to carry across an asynchronous hop; empty when there is none."""
    if _tracer is None or _propagator is None:
        return ""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", "")


def read_spans(path: Path) -> list[dict[str, Any]]:
    """The spans a ``[tracing] file`` holds, skipping a line a killed writer left torn."""
    spans = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            spans.append(json.loads(line))
    return spans
