"""Bytes of state per task: how much the state directory grows per echo task, and where.

Runs echo tasks (with a user registered and logged in now and then) against a fresh platform
and prints the growth of the state directory per task, split by component: the storage
database (its rows by key prefix: tasks, audit entries, ...), the user database, the service
logs and the rest. A second platform runs the same load with small log-rotation settings, to
show the logs' share stop growing at ``max_bytes * (backup_count + 1)`` per service while the
database keeps what it must. Prints numbers; asserts nothing about speed.

Usage: python -m benchmarks.state_growth [--tasks N]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from benchmarks.task_latency import client_of
from cloister.sdk import AuthenticationService, FunctionArgument
from cloister.testing import RunningPlatform, start_platform

COMPONENTS = ("storage db", "users db", "logs", "audit spool", "other")
ROTATION_BYTES, ROTATION_BACKUPS = 32 * 1024, 2
SMALL_ROTATION = {
    "CLOISTER_LOGGING__MAX_BYTES": str(ROTATION_BYTES),
    "CLOISTER_LOGGING__BACKUP_COUNT": str(ROTATION_BACKUPS),
}


def _component(relative: Path) -> str:
    top = relative.parts[0]
    if top == "storage" and relative.name.startswith("cloister.db"):
        return "storage db"
    if relative.name.startswith("users.db"):
        return "users db"
    if top == "audit-spool":
        return "audit spool"  # not per task: each spool's open segment claims 512 KiB up front
    return "logs" if top == "logs" else "other"


def state_sizes(state_dir: Path) -> Counter[str]:
    """Bytes in the state directory by component (apparent file sizes, WAL and shm files included)."""
    sizes: Counter[str] = Counter()
    for path in state_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            sizes[_component(path.relative_to(state_dir))] += path.stat().st_size
    return sizes


def rows_by_prefix(database: Path) -> Counter[str]:
    """Sealed bytes (key and value) of the storage database's rows, by key prefix and queue."""
    rows: Counter[str] = Counter()
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        for key, size in db.execute("SELECT key, length(key) + length(value) FROM kv"):
            prefix = bytes(key).split(b"-", 1)[0].decode(errors="replace")
            rows[prefix] += size
        for (size,) in db.execute("SELECT coalesce(sum(length(queue) + length(value)), 0) FROM queue_items"):
            rows["queued"] += size
    finally:
        db.close()
    return rows


def _load(platform: RunningPlatform, tasks: int) -> None:
    frontend = client_of(platform)
    function_id = frontend.register_function(
        "builtin-echo", "bench", "builtin", arguments=[FunctionArgument("message")]
    )
    auth = AuthenticationService(*platform.connection_args("authentication"))
    auth.user_login(platform.admin_user, platform.admin_password)
    for i in range(tasks):
        task_id = frontend.create_task(function_id, {"message": f"state {i}"}, "builtin")
        frontend.invoke_task(task_id)
        assert frontend.get_task_result(task_id) == f"state {i}".encode()
        if i % 50 == 0:  # some user traffic too
            user = f"user-{i}"
            auth.user_register(user, "bench-password", "PlatformAdmin")
            other = AuthenticationService(*platform.connection_args("authentication"))
            other.user_login(user, "bench-password")
            other.close()
    auth.close()
    frontend.close()


def measure(tasks: int, env: Mapping[str, str] | None = None) -> tuple[Counter[str], Counter[str]]:
    """Growth per component and the storage rows' growth by prefix, over ``tasks`` echo tasks."""
    with tempfile.TemporaryDirectory() as tmp:
        platform = start_platform(Path(tmp), heartbeat=1.0, executor_timeout=30.0, env=env)
        database = platform.platform.settings.database_path
        try:
            warm = client_of(platform)  # the first login and its audit entries are not per-task cost
            warm.close()
            # Measured while stopped, before and after: logs flushed, write-ahead logs checkpointed.
            platform.stop()
            before, rows_before = state_sizes(platform.state_dir), rows_by_prefix(database)
            platform.restart()
            _load(platform, tasks)
        finally:
            platform.stop()
        after, rows_after = state_sizes(platform.state_dir), rows_by_prefix(database)
    after.subtract(before)
    rows_after.subtract(rows_before)
    return after, rows_after


def _print(label: str, growth: Counter[str], rows: Counter[str], tasks: int) -> None:
    total = sum(growth[c] for c in COMPONENTS)
    print(f"{label}: {total / tasks:9.0f} bytes of state per task ({tasks} echo tasks)")
    for component in COMPONENTS:
        print(f"    {component:<12} {growth[component] / tasks:9.0f} bytes/task")
    for prefix, size in sorted(rows.items(), key=lambda item: -item[1]):
        if size / tasks >= 1:
            print(f"        rows {prefix + '-*':<22} {size / tasks:9.0f} bytes/task (sealed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=400)
    args = parser.parse_args()
    growth, rows = measure(args.tasks)
    _print("default settings", growth, rows, args.tasks)
    small, small_rows = measure(args.tasks, SMALL_ROTATION)
    label = f"logs rotated at {ROTATION_BYTES // 1024} KiB x {ROTATION_BACKUPS + 1} files"
    _print(label, small, small_rows, args.tasks)
    bound = ROTATION_BYTES * (ROTATION_BACKUPS + 1) * 8  # eight processes
    print("    (the restart between the two measurements adds its start-up log lines, a constant)")
    print(f"    logs grew {small['logs']} bytes with rotation (bound {bound}), {growth['logs']} bytes without")
    if growth["logs"]:
        print(f"    logs kept with rotation = {small['logs'] / growth['logs']:.2f} x the logs without")


if __name__ == "__main__":
    main()
