"""The baseline every task figure is compared with: a unary call to a running service over its
attested TLS connection (the frontend's health check), timed the same way as the task."""

from __future__ import annotations

import functools
import statistics
import threading
import time
from collections.abc import Callable, Sequence

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
    try:
        return per_second([functools.partial(_check, peer) for peer in peers], seconds)
    finally:
        for peer in peers:
            peer.close()


def per_second(workers: Sequence[Callable[[], object]], seconds: float) -> float:
    """Calls per second of all ``workers`` together, each called back to back on a thread of its
    own for ``seconds``."""
    counts = [0] * len(workers)
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        while time.perf_counter() < deadline:
            workers[index]()
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(len(workers))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def _check(peer: SyncPeer) -> None:
    peer.call(health_pb2_grpc.HealthStub, "Check", health_pb2.HealthCheckRequest())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)
