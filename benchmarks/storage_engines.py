"""The two storage engines side by side: commit latency, queue claims per second with 1, 4 and 8
workers, and echo tasks per second through a whole platform on each.

SQLite (the embedded default, fsync on every group commit) is the baseline; PostgreSQL is printed
as a ratio to it. PostgreSQL is the server ``CLOISTER_BENCH_POSTGRES_DSN`` names (its password in
``CLOISTER_BENCH_POSTGRES_PASSWORD_FILE``), or else a throw-away cluster started for the run as the
tests start theirs: note that one runs with ``fsync=off``, so its commits are cheaper than a
production server's.

Usage: python -m benchmarks.storage_engines [--commits N] [--seconds S] [--tasks N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from benchmarks.task_latency import client_of, tasks_per_second
from cloister.crypto.sealing import Sealer
from cloister.errors import NotFoundError
from cloister.sdk import FunctionArgument
from cloister.storage.engine import Storage
from cloister.storage.ops import Ack, Claim, Enqueue, Lease, Put
from cloister.storage.postgres import PostgresStore
from cloister.storage.sqlite import SQLiteStorage, SQLiteStore
from cloister.testing import start_platform

SEALER = Sealer(os.urandom(32))
WORKERS = (1, 4, 8)


async def _commit_latency(store: Storage, commits: int) -> float:
    """Median seconds of one commit of one 1 KB Put, one after another."""
    value = os.urandom(1024)
    times = []
    for n in range(commits):
        started = time.perf_counter()
        await store.commit([Put(f"task-{n % 100}".encode(), value)])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _claims_per_second(store: Storage, workers: int, seconds: float) -> float:
    """Elements claimed and acked per second by ``workers`` concurrent workers on one queue."""
    queue = f"bench-{workers}".encode()
    await store.commit([Enqueue(queue, os.urandom(256)) for _ in range(20_000)])
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            try:
                (lease,) = await store.commit([Claim(queue, 30)])
            except NotFoundError:
                return
            assert isinstance(lease, Lease)
            await store.commit([Ack(queue, lease.seq)])
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.perf_counter() - started)


async def _measure(open_store: Callable[[], Awaitable[Storage]], commits: int, seconds: float) -> dict[str, float]:
    store = await open_store()
    try:
        results = {"commit latency (ms)": await _commit_latency(store, commits) * 1000}
        for workers in WORKERS:
            results[f"claims/s, {workers} worker(s)"] = await _claims_per_second(store, workers, seconds)
        return results
    finally:
        await store.close()


def _echo_tasks_per_second(directory: Path, env: dict[str, str], tasks: int, concurrency: int) -> float:
    """Echo tasks per second (create, invoke, result) from ``concurrency`` clients, on a platform
    whose storage ``env`` configures."""
    directory.mkdir()
    platform = start_platform(directory, heartbeat=1.0, executor_timeout=30.0, env=env)
    try:
        frontend = client_of(platform)
        function_id = frontend.register_function(
            "builtin-echo", "bench", "builtin", arguments=[FunctionArgument("message")]
        )
        frontend.close()
        tasks_per_second(platform, function_id, concurrency * 4, concurrency)  # warm up
        return tasks_per_second(platform, function_id, tasks, concurrency)
    finally:
        platform.stop()


@contextlib.contextmanager
def _postgres() -> Iterator[tuple[str, str | None]]:
    dsn = os.environ.get("CLOISTER_BENCH_POSTGRES_DSN")
    if dsn:
        password_file = os.environ.get("CLOISTER_BENCH_POSTGRES_PASSWORD_FILE")
        yield dsn, Path(password_file).read_text().strip() if password_file else None
        return
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "support"))
    from postgres_cluster import running_cluster  # the tests' throw-away cluster

    with running_cluster() as cluster:
        yield cluster.dsn(cluster.create_database()), cluster.password


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, _postgres() as (dsn, password):

        async def sqlite() -> Storage:
            store = SQLiteStorage(SQLiteStore(Path(directory) / "bench.db", SEALER))
            await store.start()
            return store

        async def postgres() -> Storage:
            store = PostgresStore(dsn, SEALER, password=password)
            await store.start()
            return store

        baseline = asyncio.run(_measure(sqlite, args.commits, args.seconds))
        measured = asyncio.run(_measure(postgres, args.commits, args.seconds))
        echo = f"echo tasks/s, {args.concurrency} clients"
        baseline[echo] = _echo_tasks_per_second(Path(directory) / "sqlite", {}, args.tasks, args.concurrency)
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as secret:
            secret.write(password or "")
        on_postgres = {"CLOISTER_STORAGE__BACKEND": "postgres", "CLOISTER_STORAGE__DSN": dsn}
        if password:
            on_postgres["CLOISTER_STORAGE__DSN_PASSWORD_FILE"] = secret.name
        measured[echo] = _echo_tasks_per_second(Path(directory) / "postgres", on_postgres, args.tasks, args.concurrency)
    print(f"{'storage engines':<32}{'sqlite':>12}{'postgres':>12}{'postgres/sqlite':>18}")
    for name, base in baseline.items():
        print(f"{name:<32}{base:>12.2f}{measured[name]:>12.2f}{measured[name] / base:>17.2f}x")


if __name__ == "__main__":
    main()
