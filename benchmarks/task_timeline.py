"""Where an echo task's time goes: every hop's spans (``[tracing]``), per task, slowest first.

Runs echo tasks one after another on a platform with tracing on, each task inside one client
span, then reads the spans every service wrote and prints, per hop (the service and method that
answered), how many calls one task makes and how long they take. Tracing adds its own cost, so
these figures are for comparing hops, not for the latency ratios ``task_latency`` prints.

Usage: python -m benchmarks.task_timeline [--tasks N] [--top K]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.task_latency import client_of
from cloister.config import TracingSettings
from cloister.rpc import tracing
from cloister.sdk import FunctionArgument
from cloister.testing import start_platform

TASK_SPAN = "bench/task"


def hops(spans: list[dict[str, Any]]) -> tuple[int, dict[str, list[float]]]:
    """The number of traced tasks, and each hop's durations (ms) within them: server spans and
    the spans a service opens for its own work (an execution service running the task)."""
    tasks = {s["trace_id"]: s for s in spans if s["name"] == TASK_SPAN}
    durations: dict[str, list[float]] = defaultdict(list)
    for span in spans:
        if span["trace_id"] in tasks and span["kind"] in ("SERVER", "INTERNAL") and span["name"] != TASK_SPAN:
            durations[span["name"]].append((span["end_ns"] - span["start_ns"]) / 1e6)
    return len(tasks), durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--keep", type=Path, default=None, help="also copy the spans to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        state, path = Path(tmp) / "state", Path(tmp) / "spans.jsonl"
        state.mkdir()
        platform = start_platform(
            state, heartbeat=1.0, executor_timeout=30.0, env={"CLOISTER_TRACING__FILE": str(path)}
        )
        try:
            frontend = client_of(platform)
            function_id = frontend.register_function(
                "builtin-echo", "bench", "builtin", arguments=[FunctionArgument("message")]
            )
            for i in range(10):  # warm up, untraced
                task_id = frontend.create_task(function_id, {"message": str(i)}, "builtin")
                frontend.invoke_task(task_id)
                frontend.get_task_result(task_id)
            tracing.configure(TracingSettings(file=path), "bench")
            task_ms = []
            for i in range(args.tasks):
                with tracing.span(TASK_SPAN):
                    task_id = frontend.create_task(function_id, {"message": str(i)}, "builtin")
                    frontend.invoke_task(task_id)
                    frontend.get_task_result(task_id)
            tracing.shutdown()
            frontend.close()
        finally:
            platform.stop()  # the services write their last spans as they stop
        spans = tracing.read_spans(path)
        if args.keep is not None:
            args.keep.write_bytes(path.read_bytes())

    count, durations = hops(spans)
    task_ms = [(s["end_ns"] - s["start_ns"]) / 1e6 for s in spans if s["name"] == TASK_SPAN]
    print(f"echo task timeline: {count} traced tasks, create->result p50 {statistics.median(task_ms):.1f} ms")
    print(f"{'hop (service/method)':<40} {'calls/task':>10} {'p50 ms':>8} {'ms/task':>8}")
    ranked = sorted(durations.items(), key=lambda kv: -sum(kv[1]))
    for name, values in ranked[: args.top]:
        print(f"{name:<40} {len(values) / count:10.2f} {statistics.median(values):8.2f} {sum(values) / count:8.2f}")
    calls = sum(len(v) for name, v in durations.items() if "/" in name and not name.startswith("execution/task"))
    print(f"server calls per task: {calls / count:.1f}")


if __name__ == "__main__":
    main()
