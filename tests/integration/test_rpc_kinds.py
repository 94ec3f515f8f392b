"""Every RPC kind on an internal endpoint gets the unary checks: inbound rules, errors, one log line.

A test server registers one method of each kind (and grpc's Health service, as every server
does) on the storage endpoint, over real TLS with attested certificates; callers are services
with attested identities, in the inbound list or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from async_helpers import run, until
from attestation_helpers import make_identity
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloister.attestation.certificate import TLS_NAME
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.report import AttestationPolicy
from cloister.attestation.verify import PeerVerifier
from cloister.config import SERVICES, RPCSettings
from cloister.errors import InvalidArgumentError
from cloister.rpc.channel import verified_credentials
from cloister.rpc.server import INBOUND, start_server

ENDPOINT = "storage"
ALLOWED, REFUSED = "scheduler", "frontend"
SERVICE = "cloister.test.Kinds"
KINDS = {"Echo": "unary_unary", "Count": "unary_stream", "Join": "stream_unary", "Chat": "stream_stream"}
STREAMING = ("Count", "Join", "Chat")
METHODS = {**KINDS, "Legacy": "unary_stream"}
MALFORMED = b"\xff"
MALFORMED_ERROR = (grpc.StatusCode.INTERNAL, "malformed request: not a valid google.protobuf.StringValue message")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("deployment"), SERVICES)


@dataclass
class Probe:
    """What the handlers did: a refused call must leave no trace here."""

    ran: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def _act(value: str) -> str:
    if value == "invalid":
        raise InvalidArgumentError("the value is not acceptable")
    if value == "crash":
        raise RuntimeError("internal detail that must not leave the server")
    return value.upper()


def _handlers(probe: Probe) -> grpc.GenericRpcHandler:
    async def echo(request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        probe.ran.append("Echo")
        return StringValue(value=_act(request.value))

    async def count(request: StringValue, context: grpc.aio.ServicerContext) -> AsyncIterator[StringValue]:
        probe.ran.append("Count")
        try:
            yield StringValue(value="0")
            if request.value == "hold":
                await probe.release.wait()
            yield StringValue(value=_act(request.value))  # fails mid-stream, after one message
        finally:
            probe.closed.append("Count")

    async def join(requests: AsyncIterator[StringValue], context: grpc.aio.ServicerContext) -> StringValue:
        probe.ran.append("Join")
        return StringValue(value=",".join([_act(r.value) async for r in requests]))

    async def chat(
        requests: AsyncIterator[StringValue], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[StringValue]:
        probe.ran.append("Chat")
        async for request in requests:
            yield StringValue(value=_act(request.value))

    def legacy(request: StringValue, context: grpc.ServicerContext) -> Iterator[StringValue]:
        probe.ran.append("Legacy")  # grpc would run this on a thread, out of the interceptor's reach
        yield StringValue(value="unchecked")

    parse, write = StringValue.FromString, StringValue.SerializeToString
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo, parse, write),
            "Count": grpc.unary_stream_rpc_method_handler(count, parse, write),
            "Join": grpc.stream_unary_rpc_method_handler(join, parse, write),
            "Chat": grpc.stream_stream_rpc_method_handler(chat, parse, write),
            "Legacy": grpc.unary_stream_rpc_method_handler(legacy, parse, write),
        },
    )


def _verifier(deployment: Deployment) -> PeerVerifier:
    return PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), AttestationPolicy())


@contextlib.asynccontextmanager
async def _serving(deployment: Deployment, probe: Probe, require_client_auth: bool = True) -> AsyncIterator[str]:
    """The storage endpoint with the test methods; ``require_client_auth=False`` is a misconfiguration."""
    identity = make_identity(deployment, ENDPOINT)
    credentials = grpc.ssl_server_credentials(
        [(identity.private_key_pem, identity.server_certificate_pem)],
        root_certificates=identity.deployment_ca_pem,
        require_client_auth=require_client_auth,
    )
    server, port = await start_server(
        ENDPOINT,
        "127.0.0.1:0",
        credentials,
        _verifier(deployment),
        RPCSettings(),
        [lambda s: s.add_generic_rpc_handlers((_handlers(probe),))],
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def _channel(deployment: Deployment, address: str, caller: str | None) -> AsyncIterator[grpc.Channel]:
    """A blocking channel as ``caller``'s attested identity, or with no client certificate (call it off the loop).

    Blocking, like the SDK's and the CLI's: grpc.aio's client can report INTERNAL instead of the
    server's status when a request stream is still being written as the server answers
    (grpc/grpc#36066), and these tests refuse request streams early on purpose.
    """
    identity = make_identity(deployment, caller) if caller is not None else None
    credentials, _ = await asyncio.to_thread(verified_credentials, address, ENDPOINT, _verifier(deployment), identity)
    with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", TLS_NAME)]) as channel:
        yield channel


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: tuple[str, ...]

    @property
    def error(self) -> tuple[grpc.StatusCode, str]:
        return self.code, self.details


def _call(channel: grpc.Channel, method: str, request: Any) -> Any:
    """``method``'s call with raw request bytes, so a malformed one can be sent."""
    multicallable = getattr(channel, METHODS[method])(
        f"/{SERVICE}/{method}", request_serializer=bytes, response_deserializer=StringValue.FromString
    )
    return multicallable(request, timeout=10)


def _outcome(channel: grpc.Channel, method: str, *requests: bytes) -> Outcome:
    """Call ``method`` and read all it answers; unary kinds send only the first request."""
    kind = KINDS[method]
    responses: list[str] = []
    try:
        answer = _call(channel, method, iter(requests) if kind.startswith("stream") else requests[0])
        for response in answer if kind.endswith("_stream") else [answer]:
            responses.append(response.value)
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "", tuple(responses))
    return Outcome(grpc.StatusCode.OK, "", tuple(responses))


async def _invoke(channel: grpc.Channel, method: str, *requests: bytes) -> Outcome:
    return await asyncio.to_thread(_outcome, channel, method, *requests)


def _value(text: str) -> bytes:
    return StringValue(value=text).SerializeToString()


def _first_watched(channel: grpc.Channel) -> Outcome:
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
    try:
        first = next(call)
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "", ())
    call.cancel()
    return Outcome(grpc.StatusCode.OK, "", (health_pb2.HealthCheckResponse.ServingStatus.Name(first.status),))


async def _watch(channel: grpc.Channel) -> Outcome:
    """Health/Watch's first answer; the stream is then cancelled."""
    return await asyncio.to_thread(_first_watched, channel)


def _server_lines(caplog: pytest.LogCaptureFixture, method: str) -> list[str]:
    return [
        r.getMessage().rsplit(" ", 1)[0]
        for r in caplog.records
        if r.name == "cloister.rpc.server" and r.getMessage().startswith(f"{method} ")
    ]


def test_a_caller_outside_the_inbound_list_is_refused_by_every_kind(deployment: Deployment) -> None:
    assert ALLOWED in INBOUND[ENDPOINT] and REFUSED not in INBOUND[ENDPOINT]
    probe = Probe()

    async def body() -> None:
        async with _serving(deployment, probe) as address, _channel(deployment, address, REFUSED) as channel:
            unary = await _invoke(channel, "Echo", _value("a"))
            assert unary.code is grpc.StatusCode.UNAUTHENTICATED and "teaclave_frontend_service" in unary.details
            for method in STREAMING:
                outcome = await _invoke(channel, method, _value("a"), _value("b"))
                assert outcome.error == unary.error, method
                assert outcome.responses == (), method
            assert (await _watch(channel)).error == unary.error
            check = health_pb2_grpc.HealthStub(channel).Check
            health = await asyncio.to_thread(check, health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING  # Check stays open

    run(body)
    assert probe.ran == []


def test_an_allowed_caller_gets_every_kind_through_and_one_log_line_per_call(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cloister.rpc.server")
    probe = Probe()

    async def body() -> None:
        async with _serving(deployment, probe) as address, _channel(deployment, address, ALLOWED) as channel:
            assert (await _invoke(channel, "Echo", _value("a"))).responses == ("A",)
            assert (await _invoke(channel, "Count", _value("a"))).responses == ("0", "A")
            assert (await _invoke(channel, "Join", _value("a"), _value("b"))).responses == ("A,B",)
            assert (await _invoke(channel, "Chat", _value("a"), _value("b"))).responses == ("A", "B")
            assert (await _watch(channel)).responses == ("SERVING",)
            await until(lambda: len(_server_lines(caplog, "Watch")) == 1)  # cancelled by the client

    run(body)
    assert probe.ran == ["Echo", "Count", "Join", "Chat"]
    for method in KINDS:
        assert _server_lines(caplog, method) == [f"{method} OK"]
    assert _server_lines(caplog, "Watch") == ["Watch CANCELLED"]


@pytest.mark.parametrize("value", ["invalid", "crash"])
def test_a_streaming_handler_error_is_answered_like_a_unary_one(
    deployment: Deployment, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    caplog.set_level(logging.INFO, logger="cloister.rpc.server")
    probe = Probe()
    outcomes: dict[str, Outcome] = {}

    async def body() -> None:
        async with _serving(deployment, probe) as address, _channel(deployment, address, ALLOWED) as channel:
            for method in KINDS:
                outcomes[method] = await _invoke(channel, method, _value(value))

    run(body)
    unary = outcomes["Echo"]
    if value == "invalid":
        assert unary.error == (grpc.StatusCode.INVALID_ARGUMENT, "the value is not acceptable")
    for method in STREAMING:
        if value == "invalid":
            assert outcomes[method].error == unary.error, method
        else:  # each call gets its own incident id; the shape, and the secret's absence, are the same
            assert outcomes[method].code is unary.code is grpc.StatusCode.INTERNAL, method
            assert outcomes[method].details.startswith("internal error (incident "), method
            assert "internal detail" not in outcomes[method].details
    assert outcomes["Count"].responses == ("0",)  # the error came mid-stream, after the first message
    assert probe.closed == ["Count"]
    status = unary.code.name
    for method in KINDS:
        assert _server_lines(caplog, method) == [f"{method} {status}"]


def test_a_malformed_request_is_refused_by_every_kind_where_it_arrives(deployment: Deployment) -> None:
    probe = Probe()
    outcomes: dict[str, Outcome] = {}

    async def body() -> None:
        async with _serving(deployment, probe) as address, _channel(deployment, address, ALLOWED) as channel:
            outcomes["Echo"] = await _invoke(channel, "Echo", MALFORMED)
            outcomes["Count"] = await _invoke(channel, "Count", MALFORMED)
            outcomes["Join"] = await _invoke(channel, "Join", _value("a"), MALFORMED, _value("b"))
            outcomes["Chat"] = await _invoke(channel, "Chat", _value("a"), MALFORMED, _value("b"))

    run(body)
    for method in KINDS:
        assert outcomes[method].error == MALFORMED_ERROR, method
    assert probe.ran == ["Join", "Chat"]  # unary requests are refused before the handler runs
    assert outcomes["Chat"].responses in {(), ("A",)}  # never an answer to what followed the bad message


def test_a_caller_without_a_client_certificate_is_refused(deployment: Deployment) -> None:
    """Even if the endpoint's TLS were misconfigured to let it in, the interceptor refuses it."""
    probe = Probe()

    async def body() -> None:
        async with _serving(deployment, probe) as address, _channel(deployment, address, None) as channel:
            assert (await _invoke(channel, "Echo", _value("a"))).code is grpc.StatusCode.UNAVAILABLE  # handshake
        async with (
            _serving(deployment, probe, require_client_auth=False) as address,
            _channel(deployment, address, None) as channel,
        ):
            refused = (grpc.StatusCode.UNAUTHENTICATED, "peer presented no attested client certificate")
            for method in KINDS:
                assert (await _invoke(channel, method, _value("a"), _value("b"))).error == refused, method
            assert (await _watch(channel)).error == refused

    run(body)
    assert probe.ran == []


def test_a_cancelled_stream_logs_once_and_no_error(deployment: Deployment, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    probe = Probe()

    async def body() -> None:
        async with _serving(deployment, probe) as address, _channel(deployment, address, ALLOWED) as channel:
            call = _call(channel, "Count", _value("hold"))
            assert (await asyncio.to_thread(next, call)).value == "0"
            call.cancel()
            await until(lambda: probe.closed == ["Count"])
            await until(lambda: len(_server_lines(caplog, "Count")) == 1)

    run(body)
    assert _server_lines(caplog, "Count") == ["Count CANCELLED"]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_handler_that_cannot_be_wrapped_is_refused_not_passed_through(deployment: Deployment) -> None:
    probe = Probe()

    async def body() -> None:
        async with _serving(deployment, probe) as address:
            for caller, expected in (
                (REFUSED, grpc.StatusCode.UNAUTHENTICATED),
                (ALLOWED, grpc.StatusCode.UNIMPLEMENTED),
            ):
                async with _channel(deployment, address, caller) as channel:
                    call = _call(channel, "Legacy", _value("a"))
                    with pytest.raises(grpc.RpcError) as raised:
                        await asyncio.to_thread(next, call)
                    assert raised.value.code() is expected

    run(body)
    assert probe.ran == []


def test_health_watch_is_refused_on_a_public_endpoint(deployment: Deployment) -> None:
    """Anyone reaches a public endpoint: an open Watch there would be a stream held for free."""

    async def scenario() -> None:
        identity = make_identity(deployment, "frontend")
        credentials = grpc.ssl_server_credentials([(identity.private_key_pem, identity.server_certificate_pem)])
        server, port = await start_server("frontend", "127.0.0.1:0", credentials, None, RPCSettings(), [])
        address = f"127.0.0.1:{port}"
        try:
            client, _ = await asyncio.to_thread(verified_credentials, address, "frontend", _verifier(deployment), None)
            options = [("grpc.ssl_target_name_override", TLS_NAME)]
            with grpc.secure_channel(address, client, options=options) as channel:
                watched = await asyncio.to_thread(_first_watched, channel)
                checked = await asyncio.to_thread(
                    health_pb2_grpc.HealthStub(channel).Check, health_pb2.HealthCheckRequest(), timeout=10
                )
        finally:
            await server.stop(None)
        assert watched.error == (grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
        assert checked.status == health_pb2.HealthCheckResponse.SERVING

    run(scenario)
