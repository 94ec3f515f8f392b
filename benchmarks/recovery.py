"""Recovery: seconds from kill -9 to serving again, per service, and throughput during the fault.

A mixed load of four clients (``cloister.testing.MixedLoad``: users, functions, tasks) runs
against one platform. For each service in turn the benchmark measures the load's throughput
over a window, kills the service, and records:

- **back**: seconds until the supervisor has it running and ready again;
- **serving**: seconds until a request that needs it succeeds (a login for authentication, a
  function registration for frontend, management, storage and access control, an echo task's
  result for scheduler and execution, a ready restart for attestation);
- **during / before**: the load's throughput in the window after the kill (outage included)
  relative to the window before it, and **after / before** for the window that follows.

Usage: python -m benchmarks.recovery [--window SECONDS]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cloister.errors import CloisterError
from cloister.launcher import START_ORDER
from cloister.rpc import addresses
from cloister.sdk import AuthenticationService, FrontendService, FunctionArgument
from cloister.testing import MixedLoad, RunningPlatform, start_platform

PROBE_WITHIN = 60.0


def _admin(platform: RunningPlatform) -> tuple[AuthenticationService, FrontendService]:
    auth = AuthenticationService(*platform.connection_args("authentication"))
    frontend = FrontendService(*platform.connection_args("frontend"))
    auth.user_login(platform.admin_user, platform.admin_password)
    frontend.metadata = dict(auth.metadata or {})
    return auth, frontend


def _probe(platform: RunningPlatform, service: str, echo: str) -> Callable[[], None]:
    """A request that succeeds only once ``service`` serves again (fresh clients each time)."""

    def login() -> None:
        auth, frontend = _admin(platform)
        auth.close()
        frontend.close()

    def register() -> None:
        auth, frontend = _admin(platform)
        try:
            frontend.register_function("probe", "recovery probe", "builtin")
        finally:
            auth.close()
            frontend.close()

    def run_task() -> None:
        auth, frontend = _admin(platform)
        try:
            task_id = frontend.create_task(echo, {"message": "probe"}, "builtin")
            frontend.invoke_task(task_id)
            frontend.get_task_result(task_id)
        finally:
            auth.close()
            frontend.close()

    def ready() -> None:
        if addresses.ready_pid(platform.platform.settings, "attestation") is None:
            raise CloisterError("not ready")

    return {"authentication": login, "scheduler": run_task, "execution": run_task, "attestation": ready}.get(
        service, register
    )


def _rate(load: MixedLoad, start: float, end: float) -> float:
    done = sum(1 for r in load.records for t in r.done_at if start <= t < end)
    return done / (end - start)


def _until(check: Callable[[], bool], within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"not back within {within} s")


def measure(platform: RunningPlatform, window: float) -> list[tuple[str, float, float, float, float]]:
    auth, frontend = _admin(platform)
    echo = frontend.register_function("builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")])
    auth.close()
    frontend.close()
    load = MixedLoad(platform, clients=4).start()
    rows = []
    try:
        time.sleep(window)  # warm
        for service in START_ORDER:
            before_start = time.monotonic()
            time.sleep(window)
            old = platform.platform.processes[service].pid
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)

            def restarted(service: str = service, old: int = old) -> bool:
                pid = addresses.ready_pid(platform.platform.settings, service)
                return pid not in (None, old)

            back = _until(restarted, PROBE_WITHIN)
            probe = _probe(platform, service, echo)

            def serves(probe: Callable[[], None] = probe) -> bool:
                try:
                    probe()
                except CloisterError:
                    return False
                return True

            serving = back + _until(serves, PROBE_WITHIN)
            time.sleep(max(0.0, killed + window - time.monotonic()))
            during_end = time.monotonic()
            time.sleep(window)
            before = _rate(load, before_start, killed)
            during = _rate(load, killed, during_end)
            after = _rate(load, during_end, time.monotonic())
            rows.append((service, back, serving, during / before if before else 0.0, after / before if before else 0.0))
    finally:
        load.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=8.0, help="seconds of load before, during and after each kill")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, start_platform(Path(directory)) as platform:
        rows = measure(platform, args.window)
    print(f"Recovery from kill -9 under a mixed load of 4 clients ({args.window:g} s windows)")
    print(f"{'service':<16}{'back (s)':>10}{'serving (s)':>13}{'during/before':>15}{'after/before':>14}")
    for service, back, serving, during, after in rows:
        print(f"{service:<16}{back:>10.2f}{serving:>13.2f}{during:>15.2f}{after:>14.2f}")


if __name__ == "__main__":
    main()
