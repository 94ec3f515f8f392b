"""A service's client of a peer (``rpc.channel.Peer``) over real attested TLS: an error the peer
relays leaves the shared channel alone, a dead peer is named (never its address), and a peer
restarted on its port is found again by the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from async_helpers import run
from attestation_helpers import make_identity
from google.protobuf.wrappers_pb2 import StringValue

from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.report import AttestationPolicy
from cloister.attestation.verify import PeerVerifier
from cloister.config import SERVICES, RPCSettings
from cloister.errors import DeadlineExceededError, UnavailableError
from cloister.rpc.channel import Peer
from cloister.rpc.server import start_server

SERVICE = "cloister.test.Heal"
RELAYED = "the storage service is unavailable; try again shortly"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("deployment"), SERVICES)


class HealStub:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        for name in ("Slow", "Relay", "Echo"):
            setattr(
                self,
                name,
                channel.unary_unary(
                    f"/{SERVICE}/{name}",
                    request_serializer=StringValue.SerializeToString,
                    response_deserializer=StringValue.FromString,
                ),
            )


def _handlers() -> grpc.GenericRpcHandler:
    async def slow(request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        await asyncio.sleep(1.0)
        return StringValue(value="slow done")

    async def relay(request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        raise UnavailableError(RELAYED)  # as management answers when storage is down

    async def echo(request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        return request

    parse, write = StringValue.FromString, StringValue.SerializeToString
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(handler, parse, write)
            for name, handler in (("Slow", slow), ("Relay", relay), ("Echo", echo))
        },
    )


@contextlib.asynccontextmanager
async def _management(deployment: Deployment, port: int = 0) -> AsyncIterator[int]:
    identity = make_identity(deployment, "management")
    credentials = grpc.ssl_server_credentials(
        [(identity.private_key_pem, identity.server_certificate_pem)],
        root_certificates=identity.deployment_ca_pem,
        require_client_auth=True,
    )
    verifier = PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), AttestationPolicy())
    server, bound = await start_server(
        "management",
        f"127.0.0.1:{port}",
        credentials,
        verifier,
        RPCSettings(),
        [lambda s: s.add_generic_rpc_handlers((_handlers(),))],
    )
    try:
        yield bound
    finally:
        await server.stop(None)


def _peer(deployment: Deployment, port: list[int]) -> Peer:
    identity = make_identity(deployment, "frontend")
    verifier = PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), AttestationPolicy())
    return Peer("management", lambda: f"127.0.0.1:{port[0]}", verifier, lambda: identity, RPCSettings())


def test_a_relayed_unavailable_leaves_other_calls_on_the_channel_alone(deployment: Deployment) -> None:
    async def scenario() -> None:
        async with _management(deployment) as port:
            peer = _peer(deployment, [port])
            try:
                slow = asyncio.ensure_future(peer.call(HealStub, "Slow", StringValue()))
                await asyncio.sleep(0.2)  # the slow call is in flight on the shared channel
                with pytest.raises(UnavailableError) as relayed:
                    await peer.call(HealStub, "Relay", StringValue())
                assert relayed.value.message == RELAYED
                assert (await slow).value == "slow done"
                assert (await peer.call(HealStub, "Echo", StringValue(value="still"))).value == "still"
            finally:
                await peer.close()

    run(scenario)


def test_a_dead_peer_is_named_not_located_and_found_again_when_back(deployment: Deployment) -> None:
    async def scenario() -> None:
        port = [0]
        async with _management(deployment) as bound:
            port[0] = bound
            peer = _peer(deployment, port)
            assert (await peer.call(HealStub, "Echo", StringValue(value="before"))).value == "before"
        try:
            with pytest.raises(UnavailableError) as down:
                await peer.call(HealStub, "Echo", StringValue(value="while down"))
            assert down.value.message == "the management service is unavailable; try again shortly"
            assert str(port[0]) not in down.value.message and "127.0.0.1" not in down.value.message
            async with _management(deployment, port[0]):  # restarted on its port, with a new certificate
                answer = await peer.call(HealStub, "Echo", StringValue(value="after"))
                assert answer.value == "after"
        finally:
            await peer.close()

    run(scenario, timeout=60)


def test_a_late_answer_is_named_by_service_and_deadline(deployment: Deployment) -> None:
    async def scenario() -> None:
        async with _management(deployment) as port:
            peer = _peer(deployment, [port])
            try:
                with pytest.raises(DeadlineExceededError) as late:
                    await peer.call(HealStub, "Slow", StringValue(), timeout=0.25)
                assert late.value.message == "the management service did not answer within 0.25 s"
                assert (await peer.call(HealStub, "Echo", StringValue(value="next"))).value == "next"
            finally:
                await peer.close()

    run(scenario)
