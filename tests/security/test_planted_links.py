"""Attack class 2: the service follows what the task planted.

After the function returns, the execution service reads each output back by path, encrypts it
under its owner's key and uploads it; before and after, it creates and removes files next to it.
A function that can replace that path (or a directory on the way) with a symlink or hard link
makes the service read host secrets for it (the storage key, /etc/shadow, the service's own
environment with the admin password) or write and delete files outside the work directory.
Each test decrypts what was uploaded under the attacker's key: it must be exactly what the
function wrote through ``teaclave_open``; no host secret may reach the attacker; the state
directory and a watched host directory must be unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile_kit import (
    BASE_LIMITS,
    STATE_CHURN,
    UNDECIDED,
    Arena,
    judge,
    leaks,
    open_arena,
    python_payload,
    snapshot,
    unexpected_changes,
)

OWN = b"ONLY-THIS"

WRITE_OWN = r"""
def write_own(name="loot"):
    with teaclave_open(name, "wb") as out:
        out.write(b"ONLY-THIS")
"""

SYMLINK_OUTPUT = python_payload(
    WRITE_OWN
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    write_own()
    try:
        _os.unlink("../outputs/loot")
        _os.symlink(args["target"], "../outputs/loot")
    except OSError as exc:
        return report("CONTAINED", "plant refused: " + os_error(exc))
    return report("BREACHED", "planted ../outputs/loot -> " + args["target"])
"""
)

CTYPES_SYMLINKAT_OUTPUT = python_payload(
    WRITE_OWN
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    write_own()
    result, error = sysc("unlinkat", AT_FDCWD, b"../outputs/loot", 0)
    if result < 0:
        return report("CONTAINED", "unlinkat refused: " + error)
    result, error = sysc("symlinkat", args["target"].encode(), AT_FDCWD, b"../outputs/loot")
    if result < 0:
        return report("CONTAINED", "symlinkat refused: " + error)
    return report("BREACHED", "raw symlinkat planted ../outputs/loot -> " + args["target"])
"""
)

RENAMEAT2_EXCHANGE = python_payload(
    WRITE_OWN
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    write_own()
    try:
        _os.symlink(args["target"], "bait")
    except OSError as exc:
        return report("CONTAINED", "symlink in scratch refused: " + os_error(exc))
    result, error = sysc("renameat2", AT_FDCWD, b"bait", AT_FDCWD, b"../outputs/loot", 2)  # RENAME_EXCHANGE
    if result < 0:
        return report("CONTAINED", "renameat2(RENAME_EXCHANGE) refused: " + error)
    return report("BREACHED", "swapped ../outputs/loot with a symlink to " + args["target"])
"""
)

OUTPUTS_DIR_SYMLINK = python_payload(
    WRITE_OWN
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    write_own("storage.key")
    try:
        _os.rename("../outputs", "../outputs.mine")
        _os.symlink(args["target"], "../outputs")
    except OSError as exc:
        return report("CONTAINED", "replacing ../outputs refused: " + os_error(exc))
    return report("BREACHED", "../outputs -> " + args["target"])
"""
)

UPLOADS_DIR_SYMLINK = python_payload(
    WRITE_OWN
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    write_own()
    try:
        _os.symlink(args["target"], "../uploads")
    except OSError as exc:
        return report("CONTAINED", "planting ../uploads refused: " + os_error(exc))
    return report("BREACHED", "../uploads -> " + args["target"])
"""
)

OUTPUTS_DIR_TO_CANARY = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    # The output canary.txt is never created: the service removes the "unwritten" output by path.
    try:
        _os.rename("../outputs", "../outputs.mine")
        _os.symlink(args["target"], "../outputs")
    except OSError as exc:
        return report("CONTAINED", "replacing ../outputs refused: " + os_error(exc))
    return report("BREACHED", "../outputs -> " + args["target"])
""")

SCRATCH_SYMLINKS = python_payload(
    WRITE_OWN
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    write_own()
    planted = []
    for name in ("loot", "outputs", "storage.key", "result"):
        try:
            _os.symlink(args["target"], name)
            planted.append(name)
        except OSError as exc:
            return report("CONTAINED", "symlink in cwd refused: " + os_error(exc))
    return report("BREACHED", "planted in cwd: %s -> %s" % (planted, args["target"]))
"""
)

DIRECTORY_IN_PLACE = python_payload(
    WRITE_OWN
    + r"""
def entrypoint(argv):
    args = arguments(argv)
    write_own()
    try:
        _os.unlink("../outputs/loot")
        _os.mkdir("../outputs/loot")
        _os.symlink(args["target"], "../outputs/loot/key")
    except OSError as exc:
        return report("CONTAINED", "planting a directory refused: " + os_error(exc))
    return report("BREACHED", "../outputs/loot is a directory holding a link to " + args["target"])
"""
)

HARDLINK_OUTPUT = python_payload(
    WRITE_OWN
    + r"""
def entrypoint(argv):
    write_own()
    try:
        _os.unlink("../outputs/loot")
        _os.link("../spec.json", "../outputs/loot")
    except OSError as exc:
        return report("CONTAINED", "hard link refused: " + os_error(exc))
    return report("BREACHED", "../outputs/loot is a hard link to the service's spec.json")
"""
)

NUMPY_OVER_OUTPUT = python_payload(
    WRITE_OWN
    + r"""
import numpy as np


def entrypoint(argv):
    write_own()
    try:
        _os.unlink("../outputs/loot")
        np.frombuffer(b"NUMPY-BYPASSED-TEACLAVE-OPEN", dtype=np.uint8).tofile("../outputs/loot")
    except OSError as exc:
        return report("CONTAINED", "writing the output by path refused: " + os_error(exc))
    return report("BREACHED", "replaced ../outputs/loot by path with numpy")
"""
)

# case -> (payload, output name, target: a state-relative path, "watched", or an absolute host path)
CASES: dict[str, tuple[bytes, str, str]] = {
    "symlink-output-to-storage-key": (SYMLINK_OUTPUT, "loot", "state:storage/storage.key"),
    "symlink-output-to-users-key": (SYMLINK_OUTPUT, "loot", "state:authentication/users.key"),
    "symlink-output-to-deployment-ca-key": (SYMLINK_OUTPUT, "loot", "state:attestation/deployment_ca.key"),
    "symlink-output-to-etc-shadow": (SYMLINK_OUTPUT, "loot", "/etc/shadow"),
    "symlink-output-to-service-environ": (SYMLINK_OUTPUT, "loot", "/proc/self/environ"),
    "ctypes-symlinkat-output-to-jwt-key": (CTYPES_SYMLINKAT_OUTPUT, "loot", "state:authentication/jwt.key"),
    "ctypes-renameat2-exchange-to-storage-key": (RENAMEAT2_EXCHANGE, "loot", "state:storage/storage.key"),
    "outputs-dir-symlink-to-storage-dir": (OUTPUTS_DIR_SYMLINK, "storage.key", "state:storage"),
    "uploads-dir-symlink-writes-outside": (UPLOADS_DIR_SYMLINK, "loot", "watched"),
    "outputs-dir-symlink-deletes-host-file": (OUTPUTS_DIR_TO_CANARY, "canary.txt", "watched"),
    "scratch-symlinks-to-storage-key": (SCRATCH_SYMLINKS, "loot", "state:storage/storage.key"),
    "directory-in-place-of-output": (DIRECTORY_IN_PLACE, "loot", "state:storage/storage.key"),
    "hardlink-output-to-service-file": (HARDLINK_OUTPUT, "loot", "watched"),
    "numpy-writes-output-by-path": (NUMPY_OVER_OUTPUT, "loot", "watched"),
}


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with open_arena(tmp_path_factory.mktemp("planted"), BASE_LIMITS) as running:
        yield running


def _host_secrets(arena: Arena) -> list[bytes]:
    """What must never reach a tenant: the state directory's keys, /etc/shadow, the admin password."""
    found = [arena.platform.admin_password.encode()]
    for relative in (
        "storage/storage.key",
        "authentication/users.key",
        "authentication/jwt.key",
        "attestation/deployment_ca.key",
    ):
        data = (arena.state / relative).read_bytes()
        found += [line for line in data.splitlines() if len(line) >= 16 and b"-----" not in line][:3] or [data]
    shadow = Path("/etc/shadow")
    if shadow.exists():
        found += [line for line in shadow.read_bytes().splitlines() if b":$" in line]
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_service_follows_nothing_the_task_planted(
    arena: Arena, case: str, tmp_path: Path, record_verdict: Callable[[str, object], None]
) -> None:
    payload, output_name, where = CASES[case]
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "canary.txt").write_bytes(b"canary\n")
    target = (
        str(arena.state / where[6:]) if where.startswith("state:") else str(watched) if where == "watched" else where
    )
    attacker = arena.tenant("mallory")
    slot = arena.output(attacker, "loot")
    state_before, watched_before = snapshot(arena.state), snapshot(watched)

    outcome = arena.run(attacker, payload, {"target": target}, outputs={output_name: slot.data_id})

    uploaded = slot.plaintext(arena.scratch)
    verdict, evidence = judge(outcome, contained_reasons=(output_name,))
    problems = []
    if verdict == UNDECIDED:
        problems.append(f"UNDECIDED: {evidence}")
    if uploaded not in (None, OWN):
        problems.append(f"the upload under the attacker's key holds {uploaded[:160]!r}, not only {OWN!r}")
    host_secrets = _host_secrets(arena)
    leaked = set(leaks(outcome.everything + repr(uploaded), host_secrets))
    leaked |= {s.decode(errors="replace") for s in host_secrets if uploaded and s in uploaded}
    if leaked:
        problems.append(f"host secrets reached the attacker: {sorted(s[:24] for s in leaked)}")
    changed = unexpected_changes(state_before, snapshot(arena.state), STATE_CHURN)
    if changed:
        problems.append(f"state directory changed: {changed[:6]}")
    touched = unexpected_changes(watched_before, snapshot(watched))
    if touched:
        problems.append(f"host files outside the work directory changed: {touched[:6]}")
    record_verdict("verdict", f"function said {verdict}: {evidence[:200]}; problems: {problems}")
    assert not problems, f"BREACHED ({verdict}: {evidence[:300]}): " + "; ".join(problems)
    arena.assert_healthy()
