"""The baseline every task figure is compared with: a unary call to a running service over its
attested TLS connection (the frontend's health check), timed the same way as the task."""

from __future__ import annotations

import statistics
import threading
import time

from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloister.rpc.channel import SyncPeer
from cloister.sdk._connection import open_peer
from cloister.testing import RunningPlatform


def attested_round_trips(platform: RunningPlatform, calls: int = 2000) -> list[float]:
    """Seconds per unary call to the running frontend over its attested TLS connection: its gRPC
    health check, which it answers itself. A task's latency is measured in these."""
    peer = open_peer("frontend", *platform.connection_args("frontend"))
    try:
        for _ in range(100):
            _check(peer)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            _check(peer)
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        peer.close()


def attested_round_trips_per_second(platform: RunningPlatform, clients: int, seconds: float = 5.0) -> float:
    """Health checks per second the running frontend answers ``clients`` clients at once, each
    on an attested connection of its own, calling back to back. Task throughput is measured in these."""
    peers = [open_peer("frontend", *platform.connection_args("frontend")) for _ in range(clients)]
    counts = [0] * clients
    deadline = time.perf_counter() + seconds

    def work(index: int) -> None:
        while time.perf_counter() < deadline:
            _check(peers[index])
            counts[index] += 1

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.perf_counter() - started)
    finally:
        for peer in peers:
            peer.close()


def _check(peer: SyncPeer) -> None:
    peer.call(health_pb2_grpc.HealthStub, "Check", health_pb2.HealthCheckRequest())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)
