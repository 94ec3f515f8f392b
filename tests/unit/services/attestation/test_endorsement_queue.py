"""The attestation service verifies evidence off its event loop, a bounded number at a time.

A real gRPC server over TLS, built as the attestation service builds it, with an endorser whose
first verification blocks its thread until the test lets it go: standing for a long hardware
verification (dcap-qvl, RSA-PSS and ECDSA are CPU work that does not yield). While it runs, the
same server answers its other calls, and an endorsement beyond the bound is refused at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from pathlib import Path

import grpc
import pytest
from async_helpers import run, until
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister.attestation.backends import Evidence
from cloister.attestation.certificate import TLS_NAME, new_key, report_data_for
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.identity import open_backend
from cloister.config import ATTESTATION_SERVICE, SERVICES, load_settings
from cloister.errors import InvalidArgumentError
from cloister.rpc.server import start_server
from cloister.services.attestation.admission import MAX_FIELD_BYTES, EndorsementQueue
from cloister.services.attestation.endorser import Endorsement, Endorser
from cloister.services.attestation.service import tls_credentials
from cloister.services.attestation.servicer import AttestationServicer

LIFETIME = dt.timedelta(hours=1)


class BlockingEndorser(Endorser):
    """Its first ``blocked`` endorsements hold their thread until ``release`` is set."""

    def __init__(self, deployment: Deployment, blocked: int) -> None:
        super().__init__(deployment, LIFETIME)
        self.blocked = blocked
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self._calls = 0
        self._lock = threading.Lock()

    def endorse(self, evidence: Evidence, public_key_der: bytes, service: str, now: dt.datetime) -> Endorsement:
        with self._lock:
            self._calls += 1
            block = self._calls <= self.blocked
        if block:
            self.started.release()
            assert self.release.wait(20), "the test never released the verification"
        return super().endorse(evidence, public_key_der, service, now)


def _request(deployment: Deployment) -> cpb.EndorseRequest:
    key = new_key()
    evidence = open_backend("sim", deployment, "storage").evidence(report_data_for(key.public_key()))
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cpb.EndorseRequest(
        tee_backend=evidence.tee_backend,
        quote=evidence.quote,
        evidence_signature=evidence.signature,
        public_key=public,
        service="storage",
    )


async def _serve(tmp_path: Path, deployment: Deployment, queue: EndorsementQueue) -> tuple[grpc.aio.Server, str]:
    settings = load_settings(state_dir=tmp_path / "state")
    server, port = await start_server(
        ATTESTATION_SERVICE,
        "127.0.0.1:0",
        tls_credentials(deployment),
        None,
        settings.rpc,
        [lambda s: cgrpc.add_AttestationServicer_to_server(AttestationServicer(queue), s)],
    )
    return server, f"127.0.0.1:{port}"


def _channel(deployment: Deployment, address: str) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=deployment.as_root_ca_pem())
    return grpc.aio.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", TLS_NAME)])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("deployment"), SERVICES)


def test_a_slow_verification_holds_up_neither_other_calls_nor_the_loop(tmp_path: Path, deployment: Deployment) -> None:
    endorser = BlockingEndorser(deployment, blocked=1)
    queue = EndorsementQueue(endorser, workers=1, waiting=0)

    async def body() -> None:
        server, address = await _serve(tmp_path, deployment, queue)
        try:
            async with _channel(deployment, address) as channel:
                stub = cgrpc.AttestationStub(channel)
                slow = asyncio.ensure_future(stub.Endorse(_request(deployment), timeout=30))
                assert await asyncio.to_thread(endorser.started.acquire, True, 10)
                # Another RPC on the same server answers while the verification holds its thread.
                health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert health.status == health_pb2.HealthCheckResponse.SERVING
                assert not slow.done()
                # The only thread is busy and nobody may wait: the next caller is refused at once.
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Endorse(_request(deployment), timeout=5)
                assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "busy verifying 1 pieces of evidence; try again shortly" in (refused.value.details() or "")
                endorser.release.set()
                assert (await slow).client_certificate
                await until(lambda: queue.pending == 0)
                assert (await stub.Endorse(_request(deployment), timeout=10)).client_certificate
        finally:
            endorser.release.set()
            await server.stop(None)
            queue.close()

    run(body)


def test_callers_wait_in_a_bounded_line(tmp_path: Path, deployment: Deployment) -> None:
    endorser = BlockingEndorser(deployment, blocked=1)
    queue = EndorsementQueue(endorser, workers=1, waiting=2)

    async def body() -> None:
        server, address = await _serve(tmp_path, deployment, queue)
        try:
            async with _channel(deployment, address) as channel:
                stub = cgrpc.AttestationStub(channel)
                calls = [asyncio.ensure_future(stub.Endorse(_request(deployment), timeout=30))]
                assert await asyncio.to_thread(endorser.started.acquire, True, 10)
                calls += [asyncio.ensure_future(stub.Endorse(_request(deployment), timeout=30)) for _ in range(2)]
                await until(lambda: queue.pending == 3)
                with pytest.raises(grpc.aio.AioRpcError) as refused:  # the fourth finds the line full
                    await stub.Endorse(_request(deployment), timeout=5)
                assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                endorser.release.set()
                assert all(response.client_certificate for response in await asyncio.gather(*calls))
                await until(lambda: queue.pending == 0)
        finally:
            endorser.release.set()
            await server.stop(None)
            queue.close()

    run(body)


@pytest.mark.parametrize("field", ["quote", "certificates", "collateral"])
def test_oversized_fields_are_refused_before_any_verification(deployment: Deployment, field: str) -> None:
    endorser = BlockingEndorser(deployment, blocked=0)
    queue = EndorsementQueue(endorser, workers=1, waiting=0)
    request = _request(deployment)
    evidence = Evidence(request.tee_backend, request.quote, request.evidence_signature)
    evidence = dataclasses.replace(evidence, **{field: bytes(MAX_FIELD_BYTES[field] + 1)})  # type: ignore[arg-type]

    async def body() -> None:
        with pytest.raises(InvalidArgumentError, match=f"{field} is .* bytes, more than the"):
            await queue.endorse(evidence, request.public_key, "storage", dt.datetime.now(dt.UTC))

    try:
        run(body)
    finally:
        queue.close()
    assert endorser._calls == 0
