"""The audit log records every call in order, and any later edit to it is detected."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading

from conftest import admin, audit_entries

from cloister.crypto.sealing import Sealer
from cloister.sdk import FunctionArgument
from cloister.testing import RunningPlatform


def _verify(platform: RunningPlatform) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cloister", "audit", "verify", "--state-dir", str(platform.state_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_burst_is_recorded_in_order_with_its_decisions(own_platform: RunningPlatform) -> None:
    root = admin(own_platform)
    function_id = root.frontend.register_function("builtin-echo", "x", "builtin", arguments=[FunctionArgument("m")])

    def burst(worker: int) -> None:
        session = admin(own_platform)
        for _ in range(10):
            session.frontend.get_function(function_id)

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = audit_entries(root, "message:get_function -message:authorize", 40)
    assert len(entries) == 40 and all(e["result"] for e in entries)
    # Each call's decision by the access control service is in the log too, under the caller.
    decisions = audit_entries(root, f'message:"authorize function.read {function_id}"', 40)
    assert len(decisions) == 40 and all(e["result"] for e in decisions)
    assert all(e["user"] == f"{{ user: {own_platform.admin_user}, role: PlatformAdmin }}" for e in decisions)
    api_decisions = audit_entries(root, 'message:"authorize api get_function"', 1)
    assert api_decisions and all(e["user"] == "{ role: PlatformAdmin }" and e["result"] for e in api_decisions)
    # Newer seconds first and, within a second, in the order recorded (Teaclave's order, §13.3):
    # so recording order matches the calls' timestamps.
    stamps = [int(e["microsecond"]) for e in entries]  # int64 is a string in MessageToDict
    assert stamps == sorted(stamps, key=lambda s: (-(s // 1_000_000), s))
    logins = audit_entries(root, "message:user_login", 5)
    assert logins and all(e["user"] == f"{{ user: {own_platform.admin_user} }}" for e in logins)
    assert not any(own_platform.admin_password in e["message"] for e in logins)
    result = _verify(own_platform)
    assert result.returncode == 0, result.stderr
    assert "audit log verified" in result.stdout


def _edit(platform: RunningPlatform, change) -> None:
    """An insider with the storage key rewrites stored audit rows directly in the database."""
    sealer = Sealer((platform.state_dir / "storage" / "storage.key").read_bytes())
    db = sqlite3.connect(platform.state_dir / "storage" / "cloister.db")
    rows = db.execute(
        "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key", (b"audit-", b"audit.")
    ).fetchall()
    plain = [(bytes(k), json.loads(sealer.unseal(v, bytes(k)))) for k, v in rows]
    for key, value in change(plain):
        if value is None:
            db.execute("DELETE FROM kv WHERE key = ?", (key,))
        else:
            db.execute("UPDATE kv SET value = ? WHERE key = ?", (sealer.seal(json.dumps(value).encode(), key), key))
    db.commit()
    db.close()


def test_edits_removals_and_reordering_are_detected(own_platform: RunningPlatform) -> None:
    root = admin(own_platform)
    for _ in range(5):
        root.frontend.list_functions(own_platform.admin_user)
    audit_entries(root, "message:list_functions", 5)
    own_platform.stop()
    assert _verify(own_platform).returncode == 0

    def edit(rows):
        key, value = rows[2]
        value["entry"]["result"] = not value["entry"]["result"]
        return [(key, value)]

    _edit(own_platform, edit)
    result = _verify(own_platform)
    assert result.returncode == 1 and "entry 3 was changed" in result.stderr

    _edit(
        own_platform,
        lambda rows: [
            (rows[2][0], {**rows[2][1], "entry": {**rows[2][1]["entry"], "result": not rows[2][1]["entry"]["result"]}})
        ],
    )
    assert _verify(own_platform).returncode == 0  # edited back: intact again

    _edit(own_platform, lambda rows: [(rows[1][0], rows[3][1]), (rows[3][0], rows[1][1])])
    result = _verify(own_platform)
    assert result.returncode == 1 and "TAMPERED" in result.stderr

    _edit(own_platform, lambda rows: [(rows[1][0], rows[3][1]), (rows[3][0], rows[1][1])])  # swap back
    _edit(own_platform, lambda rows: [(rows[-1][0], None)])
    result = _verify(own_platform)
    assert result.returncode == 1 and "removed or added at the end" in result.stderr
