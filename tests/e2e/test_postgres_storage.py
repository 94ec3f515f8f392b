"""The whole platform with its storage service on PostgreSQL: a task runs end to end, and the
database holds its records sealed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import admin, login
from http_fixture_server import LOOPBACK_ENV
from postgres_cluster import PostgresCluster

from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform, start_platform

MESSAGE = "postgres-held-message-7731"


@pytest.fixture
def postgres_platform(
    tmp_path: Path, postgres_cluster: PostgresCluster, postgres_database: str
) -> Iterator[RunningPlatform]:
    env = {
        **LOOPBACK_ENV,
        "CLOISTER_STORAGE__BACKEND": "postgres",
        "CLOISTER_STORAGE__DSN": postgres_cluster.dsn(postgres_database),
        "CLOISTER_STORAGE__DSN_PASSWORD_FILE": str(postgres_cluster.password_file),
    }
    with start_platform(tmp_path, env=env) as running:
        yield running


def test_a_task_runs_with_storage_on_postgres(
    postgres_platform: RunningPlatform, postgres_cluster: PostgresCluster, postgres_database: str
) -> None:
    root = admin(postgres_platform)
    root.auth.user_register("pg_user", "pg-user-password", "PlatformAdmin", "")
    user = login(postgres_platform, "pg_user", "pg-user-password")
    function_id = user.frontend.register_function(
        "builtin-echo", "returns its message", "builtin", arguments=[FunctionArgument("message")]
    )
    task_id = user.frontend.create_task(function_id, {"message": MESSAGE}, "builtin")
    user.frontend.invoke_task(task_id)
    assert user.frontend.get_task_result(task_id) == MESSAGE.encode()
    assert user.frontend.get_task(task_id)["status"] == 10

    keys = postgres_cluster.psql("SELECT encode(key, 'escape') FROM cloister_kv", postgres_database).split()
    assert f"task-{task_id.removeprefix('task-')}" in keys  # the records are in PostgreSQL
    dump = postgres_cluster.psql(
        "SELECT encode(value, 'escape') FROM cloister_kv "
        "UNION ALL SELECT encode(value, 'escape') FROM cloister_queue_items",
        postgres_database,
    )
    assert MESSAGE not in dump and "returns its message" not in dump  # ... sealed
    assert not (postgres_platform.state_dir / "storage" / "cloister.db").exists()  # and nowhere else

    logs = "".join(p.read_text() for p in (postgres_platform.state_dir / "logs").glob("*.log"))
    assert "storage" in logs
    assert postgres_cluster.password not in logs
