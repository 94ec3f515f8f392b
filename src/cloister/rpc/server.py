"""Attested gRPC servers: TLS with the service's attested certificate, inbound rules, errors.

Public endpoints (authentication API, frontend) use one-way TLS like Teaclave's. Internal
endpoints require a client certificate from the deployment CA, and every call re-checks that
the peer's evidence verifies and that its identity is in the endpoint's inbound list
(reference §14.6). One interceptor also maps errors and writes one log line per call, for
every RPC kind: a streaming method (grpc's own Health/Watch is on every server) would
otherwise be a way around the inbound list, and a handler it cannot wrap is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cloister.attestation.measurement import enclave_name
from cloister.attestation.verify import PeerVerifier
from cloister.config import RPCSettings
from cloister.errors import AttestationError, ConfigurationError, MalformedRequestError, UnimplementedError
from cloister.rpc import forwarding, tracing
from cloister.rpc.addresses import setting_of
from cloister.rpc.errors import status_and_message
from cloister.rpc.metadata import Caller

logger = logging.getLogger(__name__)

INBOUND: dict[str, tuple[str, ...]] = {
    "access_control": ("frontend", "management", "authentication"),
    "authentication_internal": ("frontend",),
    "storage": ("management", "scheduler"),
    "management": ("frontend",),
    "scheduler": ("execution",),
}
"""Which services may call each internal endpoint."""

INBOUND_METHODS: dict[str, dict[str, tuple[str, ...]]] = {
    "management": {
        "/teaclave_management_service_proto.TeaclaveManagement/SaveLogs": (
            "authentication",
            "access_control",
            "execution",
        ),
    },
}
"""Cloister's additions to the inbound rules, per method: authentication ships its API's audit
entries, access control its decisions, and execution its refusals of tasks that differ from
their approved manifest, to management's log; none may call anything else there."""

PUBLIC_ENDPOINTS = frozenset({"authentication_api", "frontend"})
ANSWERED_BY = "cloister-answered-by"
"""Trailing metadata on every error a service itself answers with, naming the endpoint: a
client then tells an error the service chose to relay (UNAVAILABLE: its own peer is down)
from one its connection to the service produced."""
_OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check"})
"""Open to any caller the TLS layer let in. Health/Watch is not: nothing of ours watches, and an
open stream holds a task on the server for as long as the caller likes."""
_NOT_PUBLIC = frozenset({"/grpc.health.v1.Health/Watch"})
"""Refused on the public endpoints, where anyone could hold as many of these streams open as they like."""
_ADMISSION_TTL = 60.0

request_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("request_context", default=None)
"""Bound for every call: service, method, request_id and user_id, for log records."""


def channel_options(rpc: RPCSettings, internal: bool = False) -> list[tuple[str, Any]]:
    limit = rpc.internal_max_message_bytes if internal else rpc.max_message_bytes
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


def _metadata_limits(endpoint: str) -> list[tuple[str, Any]]:
    """Room on the public endpoints for a forwarded client address, which carries a certificate."""
    if endpoint not in PUBLIC_ENDPOINTS:
        return []
    most = forwarding.MAX_METADATA_BYTES
    return [("grpc.max_metadata_size", most), ("grpc.absolute_max_metadata_size", most)]


def keepalive_interval_ms(rpc: RPCSettings) -> int:
    """Clients ping this often while a call waits and give up after as long again without an answer."""
    return max(1, int(rpc.peer_timeout_seconds * 1000 / 2))


def _ping_tolerance(rpc: RPCSettings) -> list[tuple[str, Any]]:
    """Accept our clients' keepalive pings during calls that send no data (a long poll), which
    gRPC otherwise answers with GOAWAY after two; pings faster than that still count as strikes."""
    return [("grpc.http2.min_ping_interval_without_data_ms", keepalive_interval_ms(rpc) // 2)]


class _Malformed:
    """Stands in for a request that did not parse, so the call can answer with a clear error."""

    def __init__(self, expected: str) -> None:
        self.expected = expected


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    expected = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    name = expected.full_name if expected is not None else "request"

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return _Malformed(name)

    return deserialize


def _parsed(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise MalformedRequestError(f"malformed request: not a valid {request.expected} message")
    return request


class _Requests:
    """A request stream that raises at the first message that did not parse, where the handler reads it."""

    def __init__(self, requests: AsyncIterator[Any]) -> None:
        self._requests = aiter(requests)

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> Any:
        return _parsed(await anext(self._requests))


_Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]

_KINDS: dict[tuple[bool, bool], tuple[str, Callable[..., grpc.RpcMethodHandler]]] = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}
"""(request streaming, response streaming): the handler attribute grpc calls, and its factory."""


def _as_coroutine(behavior: _Behavior | None, streams_in: bool, streams_out: bool) -> _Behavior | None:
    """``behavior`` as one coroutine per call that sees only parsed requests; None if it is not async.

    Responses leave by return value or by ``context.write``, never through a generator of ours:
    the checks, the log line and the context variables then live in one task's frame, and end
    once, when the call does, whether it finished, failed or was cancelled.
    """
    prepare: Callable[[Any], Any] = _Requests if streams_in else _parsed
    if streams_out and inspect.isasyncgenfunction(behavior):
        produce = behavior

        async def write_each(request: Any, context: grpc.aio.ServicerContext) -> None:
            async with contextlib.aclosing(produce(prepare(request), context)) as responses:
                async for response in responses:
                    await context.write(response)

        return write_each
    if inspect.iscoroutinefunction(behavior):
        answer = behavior

        async def await_answer(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await answer(prepare(request), context)

        return await_answer
    return None  # sync (grpc would run it on a thread, which we cannot await) or missing


async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
    raise UnimplementedError("method not implemented")


class _CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, endpoint: str, verifier: PeerVerifier | None, forwarder_issuer: x509.Certificate | None = None
    ) -> None:
        self._endpoint = endpoint
        self._verifier = verifier
        self._forwarder_issuer = forwarder_issuer
        self._inbound = tuple(enclave_name(s) for s in INBOUND.get(endpoint, ()))
        self._by_method = {
            method: (*self._inbound, *(enclave_name(s) for s in extra))
            for method, extra in INBOUND_METHODS.get(endpoint, {}).items()
        }
        self._admitted: dict[tuple[bytes, tuple[str, ...]], float] = {}
        """Client certificates verified in the last ``_ADMISSION_TTL`` seconds."""
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        """Each registered method's handler, wrapped once."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        wrapped = self._wrapped.get(details.method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(details)
        if handler is None:
            return handler  # not cached: method names come from callers
        wrapped = self._wrapped[details.method] = self._wrap(details.method, handler)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` with the inbound rules, log context and error mapping every call gets, whatever its kind."""
        streams_in, streams_out = bool(handler.request_streaming), bool(handler.response_streaming)
        attribute, make_handler = _KINDS[streams_in, streams_out]
        behavior = _as_coroutine(getattr(handler, attribute, None), streams_in, streams_out)
        if behavior is None:
            logger.error("%s has no async %s handler; every call to it is refused", method, attribute)
            behavior = _refuse
        elif not self._inbound and method in _NOT_PUBLIC:
            behavior = _refuse
        name = method.rsplit("/", 1)[-1]
        allowed = self._by_method.get(method, self._inbound)
        checked = bool(self._inbound) and method not in _OPEN_METHODS
        public = self._endpoint in PUBLIC_ENDPOINTS

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = context.invocation_metadata()
            user_id = Caller.from_metadata(metadata).user_id or ""
            fields = {
                "service": self._endpoint,
                "method": name,
                "request_id": os.urandom(8).hex(),
                "user_id": user_id[:64],
            }
            token = request_context.set(fields)
            started = time.perf_counter()
            outcome = "OK"
            address: contextvars.Token[bytes | None] | None = None
            with tracing.server_span(self._endpoint, name, metadata) as span:
                try:
                    if checked:
                        self._check_peer(context, allowed)
                    if public:
                        address = forwarding.bind_caller_ip(context, name, self._verifier, self._forwarder_issuer)
                    return await behavior(request, context)
                except asyncio.CancelledError:
                    outcome = "CANCELLED"  # the caller went away (or the server is stopping): nothing to answer or map
                    raise
                except Exception as exc:
                    if isinstance(exc, grpc.aio.AbortError):
                        raise
                    code, message = status_and_message(exc, method)
                    outcome = code.name
                    await context.abort(code, message, trailing_metadata=((ANSWERED_BY, self._endpoint),))
                finally:
                    tracing.set_outcome(span, outcome)
                    logger.info("%s %s %.1fms", name, outcome, (time.perf_counter() - started) * 1000)
                    request_context.reset(token)
                    if address is not None:
                        forwarding.unbind_caller_ip(address)

        parse = handler.request_deserializer
        return make_handler(
            call,
            request_deserializer=_tolerant(parse) if parse is not None else None,
            response_serializer=handler.response_serializer,
        )

    def _check_peer(self, context: grpc.aio.ServicerContext, allowed: tuple[str, ...]) -> None:
        if self._verifier is None:
            raise AttestationError("this endpoint cannot verify peers")
        certs = context.auth_context().get("x509_pem_cert") or []
        if not certs:
            raise AttestationError("peer presented no attested client certificate")
        now = time.monotonic()
        admitted = (certs[0], allowed)
        if self._admitted.get(admitted, 0.0) > now:
            return
        der = ssl.PEM_cert_to_DER_cert(certs[0].decode())
        self._verifier.verify(der, allowed)
        if len(self._admitted) > 1024:
            self._admitted.clear()
        self._admitted[admitted] = now + _ADMISSION_TTL


def requires_client_certificate(endpoint: str) -> bool:
    return endpoint in INBOUND


async def start_server(
    endpoint: str,
    address: str,
    credentials: grpc.ServerCredentials,
    verifier: PeerVerifier | None,
    rpc: RPCSettings,
    register: Iterable[Callable[[grpc.aio.Server], None]],
    *,
    forwarder_issuer: x509.Certificate | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start a TLS server for ``endpoint`` at ``address``; returns it and its bound port.

    ``credentials`` must require client certificates exactly when the endpoint has inbound
    rules (:func:`requires_client_certificate`); the interceptor then checks each caller. On a
    public endpoint, a forwarded client address is taken only with a certificate that
    ``forwarder_issuer`` (the deployment CA) issued (:mod:`cloister.rpc.forwarding`).
    """
    server = grpc.aio.server(
        interceptors=[_CallInterceptor(endpoint, verifier, forwarder_issuer)],
        options=[
            *channel_options(rpc, internal=endpoint not in PUBLIC_ENDPOINTS),
            *_ping_tolerance(rpc),
            *_metadata_limits(endpoint),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=None,
    )
    for add in register:
        add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises where it used to return 0; its message names neither cause
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"cannot listen on {address}: the port is in use or the host is not this machine's; "
            f"change {setting_of(endpoint)}"
        )
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port


__all__ = [
    "INBOUND",
    "PUBLIC_ENDPOINTS",
    "channel_options",
    "keepalive_interval_ms",
    "request_context",
    "requires_client_certificate",
    "start_server",
]
