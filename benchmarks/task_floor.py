"""The floor of the task path: what an echo task would cost if every service did nothing but the
calls, the durable writes and the sandboxed run a task cannot do without.

Six processes stand in for frontend, management, access control, storage, scheduler and
execution, joined by gRPC over mutual TLS like the real services. Their handlers hold no logic,
only what the guarantees make them do: storage appends 64 bytes and fsyncs (acknowledged writes
are durable), access control and the frontend append 64 bytes to an audit log and fsync before
they answer (every decision and every call audited before it is answered), execution runs
builtin echo in a real :class:`~cloister.executors.Sandbox`. A task makes the calls those
guarantees ask for: each of create, invoke and wait goes client → frontend → management →
access control (every decision asked); create and invoke commit; the scheduler commits the
hand-out before the run (no task run twice) and the result after it. The scheduler's
hand-out, the run and the result are on the invoke's critical path, as they are for a client
waiting on the task, so the invoke here answers when the result is committed.

The ratios are printed against the same baseline ``task_latency`` uses, measured in this run:
a unary call the frontend answers itself. Where the platform's figures stand next to these is
how much of a task's cost is Cloister's own work rather than the design's.

Usage: python -m benchmarks.task_floor [--tasks N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.baseline import median, per_second, percentile

ROUTES: dict[str, dict[str, list[tuple[str, str]]]] = {
    "frontend": {
        "create": [("management", "create")],
        "invoke": [("management", "invoke")],
        "wait": [("management", "wait")],
    },
    "management": {
        "create": [("access_control", "decide"), ("storage", "commit")],
        "invoke": [("access_control", "decide"), ("storage", "commit"), ("scheduler", "hand_out")],
        "wait": [("access_control", "decide")],
    },
    "scheduler": {"hand_out": [("storage", "commit"), ("execution", "run"), ("storage", "commit")]},
    "access_control": {"decide": []},
    "storage": {"commit": []},
    "execution": {"run": []},
}
"""Which calls each stand-in makes, in order, for each of its methods."""


def _same(data: bytes) -> bytes:
    return data


def _certificate() -> tuple[bytes, bytes]:
    """A self-signed certificate for localhost (PEM) and its key: every party presents it and trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), pem_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _own_work(name: str, directory: Path) -> Callable[[], Awaitable[None]]:
    """What a stand-in does itself after its calls: a durable write (storage's commit, an audit
    entry), or execution's sandboxed run.

    The fsync runs on the event loop: handing it to a thread, to share one fsync among the
    appends that arrive meanwhile, measured slower here for both latency and throughput.
    """
    if name in ("storage", "access_control", "frontend"):
        fd = os.open(directory / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

        async def append() -> None:
            os.write(fd, os.urandom(64))
            os.fsync(fd)

        return append
    if name == "execution":
        from cloister.config import SandboxLimits
        from cloister.executors import BuiltinExecutor, Sandbox, TaskIO
        from cloister.model.tasks import StagedTask

        executor = BuiltinExecutor(Sandbox(SandboxLimits()))

        async def run() -> None:
            arguments = {"message": "floor"}
            task = StagedTask(
                uuid.uuid4(), uuid.uuid4(), "u", "builtin", "builtin", "builtin-echo", arguments, b"", {}, {}
            )
            outputs = await executor.run(task, TaskIO())
            assert outputs.return_value == b"floor"

        return run

    async def nothing() -> None:
        return None

    return nothing


def _serve(name: str, ports: dict[str, int], pem: tuple[bytes, bytes], directory: Path, ready: Any) -> None:
    async def main() -> None:
        certificate, key = pem
        credentials = grpc.ssl_channel_credentials(certificate, key, certificate)
        channels: dict[str, grpc.aio.Channel] = {}
        own_work = _own_work(name, directory)

        async def call(peer: str, method: str, request: bytes) -> None:
            if peer not in channels:
                channels[peer] = grpc.aio.secure_channel(f"localhost:{ports[peer]}", credentials)
            stub = channels[peer].unary_unary(f"/floor/{method}", request_serializer=_same, response_deserializer=_same)
            await stub(request)

        def handler(calls: list[tuple[str, str]], work: bool = True) -> grpc.RpcMethodHandler:
            async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                for peer, method in calls:
                    await call(peer, method, request)
                if work:
                    await own_work()
                return request

            return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=_same, response_serializer=_same)

        handlers = {method: handler(calls) for method, calls in ROUTES[name].items()}
        handlers["health"] = handler([], work=False)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("floor", handlers)])
        server_credentials = grpc.ssl_server_credentials([(key, certificate)], certificate, True)
        server.add_secure_port(f"localhost:{ports[name]}", server_credentials)
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(main())


class _Client:
    def __init__(self, port: int, pem: tuple[bytes, bytes]) -> None:
        certificate, key = pem
        credentials = grpc.ssl_channel_credentials(certificate, key, certificate)
        self._channel = grpc.secure_channel(f"localhost:{port}", credentials)
        self._methods = {
            method: self._channel.unary_unary(f"/floor/{method}", request_serializer=_same, response_deserializer=_same)
            for method in ("health", "create", "invoke", "wait")
        }

    def health(self) -> None:
        self._methods["health"](b"")

    def create(self) -> None:
        self._methods["create"](b"task")

    def invoke_and_wait(self) -> None:
        self._methods["invoke"](b"task")
        self._methods["wait"](b"task")

    def task(self) -> None:
        self.create()
        self.invoke_and_wait()

    def close(self) -> None:
        self._channel.close()


def _timed(work: Callable[[], None], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput run")
    args = parser.parse_args()

    pem = _certificate()
    ports = {name: _free_port() for name in ROUTES}
    processes: list[multiprocessing.Process] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name in ROUTES:
                ready = multiprocessing.Event()
                process = multiprocessing.Process(target=_serve, args=(name, ports, pem, Path(tmp), ready), daemon=True)
                process.start()
                processes.append(process)
                if not ready.wait(30):
                    raise SystemExit(f"the {name} stand-in did not start")
            client = _Client(ports["frontend"], pem)
            for _ in range(50):
                client.health()
                client.task()
            baseline = _timed(client.health, 2000)
            samples = _timed(client.invoke_and_wait, args.tasks)
            clients = [_Client(ports["frontend"], pem) for _ in range(args.concurrency)]
            baseline_rate = per_second([c.health for c in clients], args.seconds)
            throughput = per_second([c.task for c in clients], args.seconds)
            for each in [client, *clients]:
                each.close()
        finally:
            for process in processes:
                if process.pid is not None:
                    os.kill(process.pid, 9)
                process.join()

    rtt = median(baseline)
    p50, p99 = median(samples), percentile(samples, 0.99)
    print("task floor: logic-free stand-ins of six services; each task's calls, fsyncs and sandboxed run")
    print(f"round trip (frontend stand-in answers itself) p50 {rtt * 1000:8.3f} ms   (baseline)")
    print(f"round trips with {args.concurrency} clients              {baseline_rate:8.1f} /s   (baseline)")
    print(f"floor echo invoke->result          p50 {p50 * 1000:8.3f} ms   = {p50 / rtt:6.1f} x baseline")
    print(f"floor echo invoke->result          p99 {p99 * 1000:8.3f} ms   = {p99 / rtt:6.1f} x baseline")
    print(
        f"floor echo throughput                  {throughput:8.1f} tasks/s with {args.concurrency} clients"
        f" = {throughput / baseline_rate:6.3f} x baseline"
    )


if __name__ == "__main__":
    main()
