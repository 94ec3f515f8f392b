"""Attack class 1: data names become host paths.

A function's input and output names (RegisterFunction), a task's owner lists (CreateTask) and
its data maps (AssignData) end up as file names under the task's directory on the execution
host, so ``../``, ``/``, NUL and oversized names are path injection. Each such name must be
refused with INVALID_ARGUMENT naming it (valid: 1-128 of ``A-Za-z0-9_-.``, not starting with
``.``), and a name aimed at a canary file outside the state directory must leave it intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile_kit import (
    BASE_LIMITS,
    Arena,
    OutputSlot,
    open_arena,
    python_payload,
    snapshot,
    unexpected_changes,
    unique,
)

from cloister.errors import CloisterError, InvalidArgumentError
from cloister.sdk import DataMap, FunctionInput, FunctionOutput, OwnerList

BAD_NAMES = {
    "dotdot-path": "../../x",
    "absolute": "/etc/evil",
    "slash": "a/b",
    "dotdot": "..",
    "dot": ".",
    "nul": "x\x00y",
    "empty": "",
    "leading-dot": ".hidden",
    "129-chars": "a" * 129,
    "300-chars": "b" * 300,
    "2000-chars": "c" * 2000,
    "space": "a b",
    "newline": "a\nb",
    "backslash": "a\\b",
    "url-encoded": "..%2F..%2Fx",
    "non-ascii": "na\u00efve",
}


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with open_arena(tmp_path_factory.mktemp("names"), BASE_LIMITS) as running:
        yield running


def _names_it(message: str, name: str) -> bool:
    """Whether an error message names ``name`` (as is, escaped, or by its start when very long)."""
    if not name:
        return any(form in message for form in ("''", '""', "empty"))
    forms = {name, repr(name)[1:-1], json.dumps(name)[1:-1]}
    if len(name) > 64:
        forms.add(name[:32])
    return any(form in message for form in forms)


def _show(name: str) -> str:
    return repr(name) if len(name) <= 60 else f"{name[:40]!r}... ({len(name)} characters)"


def _expect_invalid(call: Callable[[], object], name: str, where: str) -> None:
    try:
        call()
    except InvalidArgumentError as error:
        named = _names_it(error.message, name)
        assert named, f"{where}: INVALID_ARGUMENT without naming {_show(name)}: {error.message!r}"
        return
    except CloisterError as error:
        pytest.fail(
            f"{where} answered {type(error).__name__} ({error.status.name}) {error.message[:120]!r}, "
            f"not INVALID_ARGUMENT naming {_show(name)}"
        )
    pytest.fail(f"BREACHED: {where} accepted the data name {_show(name)}")


@pytest.mark.parametrize("side", ["input", "output"])
@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_register_function_rejects_name(arena: Arena, case: str, side: str) -> None:
    name = BAD_NAMES[case]
    owner = arena.tenant("namer")
    files = {"inputs": [FunctionInput(name)]} if side == "input" else {"outputs": [FunctionOutput(name)]}
    _expect_invalid(
        lambda: owner.frontend.register_function(unique("f"), "", "python", payload=b"x", **files),
        name,
        f"RegisterFunction ({side})",
    )
    arena.assert_healthy()


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_create_task_rejects_name(arena: Arena, case: str) -> None:
    name = BAD_NAMES[case]
    owner = arena.tenant("namer")
    function_id = owner.frontend.register_function(
        unique("f"), "", "python", payload=b"x", inputs=[FunctionInput("data")], outputs=[FunctionOutput("result")]
    )
    _expect_invalid(
        lambda: owner.frontend.create_task(
            function_id,
            {},
            "python",
            inputs_ownership=[OwnerList("data", [owner.user])],
            outputs_ownership=[OwnerList(name, [owner.user])],
        ),
        name,
        "CreateTask (outputs_ownership)",
    )
    arena.assert_healthy()


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_assign_data_rejects_name(arena: Arena, case: str) -> None:
    name = BAD_NAMES[case]
    owner = arena.tenant("namer")
    function_id = owner.frontend.register_function(
        unique("f"), "", "python", payload=b"x", inputs=[FunctionInput("data")]
    )
    task_id = owner.frontend.create_task(function_id, {}, "python", inputs_ownership=[OwnerList("data", [owner.user])])
    data_id = arena.raw_input(owner, b"some data")
    _expect_invalid(
        lambda: owner.frontend.assign_data_to_task(task_id, [DataMap(name, data_id)], []),
        name,
        "AssignData (inputs)",
    )
    arena.assert_healthy()


# -- names aimed at a canary: the whole flow, and what happened to the host's files --------------

WRITE_OUTPUT = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    with teaclave_open(args["name"], "wb") as out:
        out.write(b"PWNED-BY-A-DATA-NAME")
    return report("BREACHED", "wrote output " + args["name"])
""")

IGNORE_OUTPUT = python_payload(r"""
def entrypoint(argv):
    return report("BREACHED", "left output unwritten: " + arguments(argv)["name"])
""")

READ_INPUT = python_payload(r"""
def entrypoint(argv):
    args = arguments(argv)
    return report("BREACHED", teaclave_open(args["name"], "rb").read()[:100])
""")

WASM_WRITE_OUTPUT = b"""
(module
  (import "env" "teaclave_create_output" (func $create (param i32) (result i32)))
  (import "env" "teaclave_write_file" (func $write (param i32 i32 i32) (result i32)))
  (import "env" "teaclave_close_file" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "PWNED-BY-A-DATA-NAME")
  (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
    (local $fd i32)
    (local.set $fd (call $create (i32.load offset=4 (local.get $argv))))
    (if (i32.lt_s (local.get $fd) (i32.const 0)) (then (return (i32.const -1))))
    (drop (call $write (local.get $fd) (i32.const 16) (i32.const 20)))
    (drop (call $close (local.get $fd)))
    (i32.const 0)))
"""

CANARY = b"canary: must stay exactly like this\n"


def _relative(arena: Arena, target: Path, under: str) -> str:
    """``target`` relative to a task's ``under`` directory (<work>/<32 hex>/<under>/)."""
    return os.path.relpath(target, arena.work_dir / ("0" * 32) / under)


E2E = {
    # (payload, executor, side, how the name is built from the canary directory)
    "python-output-absolute-canary": (WRITE_OUTPUT, "python", "output", "absolute"),
    "python-output-relative-canary-unwritten": (IGNORE_OUTPUT, "python", "output", "relative"),
    "python-output-relative-new-file": (WRITE_OUTPUT, "python", "output", "relative-new"),
    "python-input-relative-new-dir": (READ_INPUT, "python", "input", "relative-new"),
    "python-input-absolute-canary": (READ_INPUT, "python", "input", "absolute"),
    "wasm-output-relative-new-file": (WASM_WRITE_OUTPUT, "wasm", "output", "relative-new"),
    "wasm-output-absolute-canary": (WASM_WRITE_OUTPUT, "wasm", "output", "absolute"),
}


@pytest.mark.parametrize("case", sorted(E2E))
def test_name_aimed_at_a_host_file_touches_nothing(
    arena: Arena, case: str, tmp_path: Path, record_verdict: Callable[[str, object], None]
) -> None:
    payload, executor, side, how = E2E[case]
    watched = tmp_path / "watched"
    watched.mkdir()
    canary = watched / "canary.txt"
    canary.write_bytes(CANARY)
    target = canary if how in ("absolute", "relative") else watched / "planted"
    name = str(target) if how == "absolute" else _relative(arena, target, side + "s")
    before = snapshot(watched)
    owner = arena.tenant("namer")
    slot: OutputSlot | None = None
    rejection: InvalidArgumentError | None = None
    outcome = None
    try:
        if side == "output":
            slot = arena.output(owner, "named")
            task_id = arena.submit(owner, payload, {"name": name}, executor=executor, outputs={name: slot.data_id})
        else:
            data_id = arena.raw_input(owner, b"INPUT-PLANTED-BY-A-DATA-NAME")
            task_id = arena.submit(owner, payload, {"name": name}, executor=executor, inputs={name: data_id})
        outcome = arena.finish(owner, task_id)
    except InvalidArgumentError as error:
        rejection = error
    damage = unexpected_changes(before, snapshot(watched))
    record_verdict("verdict", f"rejection={rejection}; damage={damage}; outcome={outcome}")
    assert not damage, f"BREACHED: the data name {name!r} changed host files: {damage} (task: {outcome})"
    assert rejection is not None, f"BREACHED: the data name {name!r} was accepted and the task ran: {outcome}"
    assert _names_it(rejection.message, name), f"INVALID_ARGUMENT without naming {name!r}: {rejection.message!r}"
    assert canary.read_bytes() == CANARY
    arena.assert_healthy()
