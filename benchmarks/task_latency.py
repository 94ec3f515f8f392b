"""Echo-task latency (invoke → result seen by the client) and throughput on an idle platform,
each as a ratio of the same platform's attested round trip (``baseline``), measured in the same run.

Usage: python -m benchmarks.task_latency [--tasks N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.baseline import attested_round_trips, attested_round_trips_per_second, median, percentile
from cloister.sdk import AuthenticationService, FrontendService, FunctionArgument
from cloister.testing import RunningPlatform, start_platform


def client_of(platform: RunningPlatform) -> FrontendService:
    auth = AuthenticationService(*platform.connection_args("authentication"))
    auth.user_login(platform.admin_user, platform.admin_password)
    frontend = FrontendService(*platform.connection_args("frontend"))
    frontend.metadata = dict(auth.metadata or {})
    auth.close()
    return frontend


def _latencies(frontend: FrontendService, function_id: str, count: int, executor: str = "builtin") -> list[float]:
    samples = []
    for i in range(count):
        arguments = {"adder1": str(i), "adder2": "1"} if executor == "wasm" else {"message": f"bench {i}"}
        expected = str(i + 1) if executor == "wasm" else f"bench {i}"
        task_id = frontend.create_task(function_id, arguments, executor)
        started = time.perf_counter()
        frontend.invoke_task(task_id)
        result = frontend.get_task_result(task_id)
        samples.append(time.perf_counter() - started)
        assert result == expected.encode()
    return samples


PYTHON_ECHO = b"def entrypoint(argv):\n    return argv[1]\n"
WASM_ADD = Path(__file__).resolve().parent.parent / "examples" / "wasm" / "simple_add.wat"


def tasks_per_second(
    platform: RunningPlatform, function_id: str, count: int, concurrency: int, executor: str = "builtin"
) -> float:
    clients = [client_of(platform) for _ in range(concurrency)]
    per_client = count // concurrency

    def work(frontend: FrontendService) -> None:
        for i in range(per_client):
            task_id = frontend.create_task(function_id, {"message": str(i)}, executor)
            frontend.invoke_task(task_id)
            frontend.get_task_result(task_id)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return per_client * concurrency / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        platform = start_platform(Path(tmp), heartbeat=1.0, executor_timeout=30.0)
        try:
            baseline = attested_round_trips(platform)
            baseline_rate = attested_round_trips_per_second(platform, args.concurrency)
            frontend = client_of(platform)
            function_id = frontend.register_function(
                "builtin-echo", "bench", "builtin", arguments=[FunctionArgument("message")]
            )
            _latencies(frontend, function_id, 20)  # warm up
            samples = _latencies(frontend, function_id, args.tasks)
            throughput = tasks_per_second(platform, function_id, args.tasks, args.concurrency)
            python_id = frontend.register_function(
                "py-echo", "bench", "python", payload=PYTHON_ECHO, arguments=[FunctionArgument("message")]
            )
            wasm_id = frontend.register_function(
                "wasm-add", "bench", "wasm", payload=WASM_ADD.read_bytes(),
                arguments=[FunctionArgument("adder1"), FunctionArgument("adder2")],
            )  # fmt: skip
            _latencies(frontend, python_id, 5, "python")
            _latencies(frontend, wasm_id, 5, "wasm")
            python_samples = _latencies(frontend, python_id, args.tasks // 2, "python")
            python_throughput = tasks_per_second(platform, python_id, args.tasks, args.concurrency, "python")
            wasm_samples = _latencies(frontend, wasm_id, args.tasks // 2, "wasm")
            frontend.close()
        finally:
            platform.stop()

    rtt = median(baseline)
    p50, p99 = median(samples), percentile(samples, 0.99)
    print(f"attested round trip (frontend health check) p50 {rtt * 1000:8.3f} ms   (baseline, {len(baseline)} calls)")
    print(f"attested round trips with {args.concurrency} clients   {baseline_rate:8.1f} /s   (baseline)")
    print(f"echo task invoke->result          p50 {p50 * 1000:8.3f} ms   = {p50 / rtt:6.1f} x baseline")
    print(f"echo task invoke->result          p99 {p99 * 1000:8.3f} ms   = {p99 / rtt:6.1f} x baseline")
    print(
        f"echo task throughput                  {throughput:8.1f} tasks/s with {args.concurrency} clients"
        f" = {throughput / baseline_rate:6.3f} x baseline"
    )
    for label, sample in (("python task", python_samples), ("wasm task", wasm_samples)):
        p = median(sample)
        print(f"{label:<12} invoke->result          p50 {p * 1000:8.3f} ms   = {p / p50:6.2f} x echo task")
    print(f"python task throughput                {python_throughput:8.1f} tasks/s with {args.concurrency} clients")
    print(f"tasks measured: {len(samples)} sequential, {args.tasks // args.concurrency * args.concurrency} concurrent")


if __name__ == "__main__":
    main()
