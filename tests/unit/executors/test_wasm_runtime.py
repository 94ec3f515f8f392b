"""The wasm runtime: Teaclave's WAMR ABI on wasmtime, on the examples and on hostile modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import wasmtime
from memory_runtime import MemoryRuntime
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.executors.wasm_runtime import WRITE_HANDLE_BIT, WasmLimits, flat_arguments, run_wasm
from cloister.functions import FunctionError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "wasm"
MILLIONAIRE = TEACLAVE_FIXTURES / "functions" / "wamr_c_millionaire_problem"
SMALL = WasmLimits(memory_bytes=1 << 20, fuel=1_000_000)


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def probe(body: str, *, locals_: str = "", extra: str = "") -> bytes:
    """A module with all five imports whose entrypoint runs ``body``; $in/$out are argv[1]/argv[3]."""
    return f"""(module
      (import "env" "teaclave_open_input" (func $open_input (param i32) (result i32)))
      (import "env" "teaclave_create_output" (func $create_output (param i32) (result i32)))
      (import "env" "teaclave_read_file" (func $read_file (param i32 i32 i32) (result i32)))
      (import "env" "teaclave_write_file" (func $write_file (param i32 i32 i32) (result i32)))
      (import "env" "teaclave_close_file" (func $close_file (param i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 256) "hello")
      (data (i32.const 300) "nope\\00")
      {extra}
      (func (export "entrypoint") (param $argc i32) (param $argv i32) (result i32)
        (local $in i32) (local $out i32) (local $h i32) (local $r i32) {locals_}
        (local.set $in (i32.load offset=4 (local.get $argv)))
        (local.set $out (i32.load offset=12 (local.get $argv)))
        {body}))""".encode()


def bare(body: str, *, pages: int = 1, params: str = "i32 i32", result: str = "i32") -> bytes:
    """A module with no imports whose entrypoint has the given signature and body."""
    entry = f'(func (export "entrypoint") (param {params}) (result {result}) {body})'
    return f'(module (memory (export "memory") {pages}) {entry})'.encode()


def run_probe(body: str, runtime: MemoryRuntime | None = None, limits: WasmLimits = SMALL, **kwargs: Any) -> str:
    runtime = runtime or MemoryRuntime({"data": b"abc"}, ("result",))
    return run_wasm(probe(body, **kwargs), {"in": "data", "out": "result"}, runtime, limits)


# -- flat arguments (§11.5) -----------------------------------------------------------------


def test_flat_arguments_reference_example() -> None:
    assert flat_arguments({"message": "Hello"}) == ["message", "Hello"]


def test_flat_arguments_sorts_keys_and_renders_json_compactly() -> None:
    arguments = {"b": 10, "a": True, "d": {"y": [1, 2], "x": None}, "c": 0.1, "e": "é", "f": "ünïcode"}
    assert flat_arguments(arguments) == [
        "a", "true", "b", "10", "c", "0.1", "d", '{"x":null,"y":[1,2]}', "e", "é", "f", "ünïcode",
    ]  # fmt: skip
    assert flat_arguments({}) == []
    assert flat_arguments({"s": "10", "n": 10}) == ["n", "10", "s", "10"]


# -- the examples ---------------------------------------------------------------------------


def test_simple_add() -> None:
    assert run_wasm(example("simple_add.wat"), {"adder1": "3", "adder2": "4"}, MemoryRuntime()) == "7"
    assert run_wasm(example("simple_add.wat"), {"adder1": "-10", "adder2": 4}, MemoryRuntime()) == "-6"


def test_simple_add_accepts_binary_modules() -> None:
    binary = bytes(wasmtime.wat2wasm(example("simple_add.wat").decode()))
    assert run_wasm(binary, {"adder1": "30", "adder2": "12"}, MemoryRuntime()) == "42"


def _millionaire_inputs() -> dict[str, bytes]:
    if MILLIONAIRE.is_dir():
        return {
            "pf_in_a": (MILLIONAIRE / "input_a.txt").read_bytes(),
            "pf_in_b": (MILLIONAIRE / "input_b.txt").read_bytes(),
        }
    return {"pf_in_a": b"4211037", "pf_in_b": b"1008611"}


def test_millionaire_fixture() -> None:
    runtime = MemoryRuntime(_millionaire_inputs(), ("pf_out",))
    arguments = {"input_file_id1": "pf_in_a", "input_file_id2": "pf_in_b", "output_file_id": "pf_out"}
    assert run_wasm(example("millionaire.wat"), arguments, runtime) == "7"
    expected = (MILLIONAIRE / "expected_output.txt").read_bytes() if MILLIONAIRE.is_dir() else b"pf_in_a"
    assert runtime.outputs == {"pf_out": expected} == {"pf_out": b"pf_in_a"}


def test_millionaire_picks_the_second_when_richer() -> None:
    runtime = MemoryRuntime({"alice": b"12", "bob": b"9999999999"}, ("verdict",))
    arguments = {"input_file_id1": "alice", "input_file_id2": "bob", "output_file_id": "verdict"}
    assert run_wasm(example("millionaire.wat"), arguments, runtime) == "3"
    assert runtime.outputs == {"verdict": b"bob"}


def test_millionaire_with_an_unknown_input_returns_minus_one() -> None:
    runtime = MemoryRuntime({"pf_in_a": b"1"}, ("pf_out",))
    arguments = {"input_file_id1": "pf_in_a", "input_file_id2": "missing", "output_file_id": "pf_out"}
    assert run_wasm(example("millionaire.wat"), arguments, runtime) == "-1"


# -- hostile modules ------------------------------------------------------------------------


def test_trap_fails_the_task() -> None:
    with pytest.raises(FunctionError, match=r"^wasm trap: .*unreachable"):
        run_wasm(example("trap.wat"), {}, MemoryRuntime())


def test_infinite_loop_runs_out_of_fuel() -> None:
    with pytest.raises(FunctionError) as caught:
        run_wasm(example("loop.wat"), {}, MemoryRuntime(), WasmLimits(fuel=100_000))
    assert caught.value.reason == "wasm function ran out of fuel (its CPU budget)"


def test_unbounded_growth_hits_the_memory_limit() -> None:
    with pytest.raises(FunctionError) as caught:
        run_wasm(example("grow.wat"), {}, MemoryRuntime(), SMALL)
    assert caught.value.reason == f"wasm memory limit of {1 << 20} bytes exceeded"


def test_initial_memory_above_the_limit() -> None:
    with pytest.raises(FunctionError, match=r"^wasm memory limit of 1048576 bytes exceeded$"):
        run_wasm(bare("i32.const 0", pages=17), {}, MemoryRuntime(), SMALL)


def test_out_of_bounds_access_traps() -> None:
    with pytest.raises(FunctionError, match=r"^wasm trap: out of bounds memory access$"):
        run_probe("(i32.load (i32.const 70000000))")


def test_bad_pointers_get_minus_one() -> None:
    assert run_wasm(example("bad_pointer.wat"), {"input": "data"}, MemoryRuntime({"data": b"abc"})) == "-5"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"garbage", r"^invalid WebAssembly module: expected `\(`"),
        (b"\0asm\x01\0\0\0\xff\xff", r"^invalid WebAssembly module: "),
        (b"\xff\xfe\xfd", r"^invalid WebAssembly module: neither binary"),
        (
            b'(module (import "env" "atoi" (func (param i32) (result i32))) (memory (export "memory") 1)'
            b' (func (export "entrypoint") (param i32 i32) (result i32) i32.const 0))',
            r"^invalid WebAssembly module: unknown import: `env::atoi`",
        ),
        (
            b'(module (import "env" "teaclave_close_file" (func (param i64) (result i32))) (memory (export "memory") 1)'
            b' (func (export "entrypoint") (param i32 i32) (result i32) i32.const 0))',
            r"^invalid WebAssembly module: ",
        ),
    ],
)
def test_invalid_modules(payload: bytes, reason: str) -> None:
    with pytest.raises(FunctionError, match=reason):
        run_wasm(payload, {}, MemoryRuntime())


@pytest.mark.parametrize(
    "module",
    [
        b"(module)",
        bare("i32.const 0", params="i32"),
        bare("i64.const 0", result="i64"),
        b'(module (memory (export "memory") 1) (global (export "entrypoint") i32 (i32.const 0)))',
    ],
)
def test_module_without_entrypoint(module: bytes) -> None:
    with pytest.raises(FunctionError) as caught:
        run_wasm(module, {}, MemoryRuntime())
    assert caught.value.reason == "the module exports no entrypoint(argc, argv) function"


def test_module_without_memory() -> None:
    with pytest.raises(FunctionError, match="no 32-bit linear memory"):
        run_wasm(b'(module (func (export "entrypoint") (param i32 i32) (result i32) i32.const 0))', {}, MemoryRuntime())


def test_start_function_trap() -> None:
    with pytest.raises(FunctionError, match=r"^wasm trap: "):
        run_probe("(i32.const 0)", extra="(start $boom) (func $boom unreachable)")


# -- file handles (§11.3) -------------------------------------------------------------------


def test_handles_are_sequential_and_write_handles_are_marked() -> None:
    body = "(drop (call $open_input (local.get $in))) (call $create_output (local.get $out))"
    assert run_probe(body) == str(2 | WRITE_HANDLE_BIT)
    assert run_probe("(call $open_input (local.get $in))") == "1"


def test_read_until_eof() -> None:
    body = """(local.set $h (call $open_input (local.get $in)))
        (local.set $r (call $read_file (local.get $h) (i32.const 512) (i32.const 100)))
        (i32.add (i32.mul (local.get $r) (i32.const 10))
                 (call $read_file (local.get $h) (i32.const 512) (i32.const 100)))"""
    assert run_probe(body) == "30"


def test_write_then_close_produces_the_output() -> None:
    runtime = MemoryRuntime({}, ("result",))
    body = """(local.set $h (call $create_output (local.get $out)))
        (local.set $r (call $write_file (local.get $h) (i32.const 256) (i32.const 5)))
        (i32.add (i32.mul (local.get $r) (i32.const 10)) (call $close_file (local.get $h)))"""
    assert run_probe(body, runtime) == "50"
    assert runtime.outputs == {"result": b"hello"}


def test_outputs_left_open_are_closed_at_the_end() -> None:
    runtime = MemoryRuntime({}, ("result",))
    body = "(call $write_file (call $create_output (local.get $out)) (i32.const 256) (i32.const 5))"
    assert run_probe(body, runtime) == "5"
    assert runtime.outputs == {"result": b"hello"}


def test_outputs_are_closed_when_the_module_traps() -> None:
    runtime = MemoryRuntime({}, ("result",))
    body = "(drop (call $write_file (call $create_output (local.get $out)) (i32.const 256) (i32.const 2))) unreachable"
    with pytest.raises(FunctionError, match=r"^wasm trap"):
        run_probe(body, runtime)
    assert runtime.outputs == {"result": b"he"}


def test_wrong_direction_is_refused() -> None:
    read_a_write_handle = "(call $read_file (call $create_output (local.get $out)) (i32.const 512) (i32.const 4))"
    write_a_read_handle = "(call $write_file (call $open_input (local.get $in)) (i32.const 256) (i32.const 4))"
    assert run_probe(read_a_write_handle) == "-1"
    assert run_probe(write_a_read_handle) == "-1"


def test_closing_twice_or_an_unknown_handle_is_refused() -> None:
    body = """(local.set $h (call $open_input (local.get $in)))
        (i32.add (i32.mul (call $close_file (local.get $h)) (i32.const 100)) (call $close_file (local.get $h)))"""
    assert run_probe(body) == "-1"
    assert run_probe("(call $close_file (i32.const 42))") == "-1"
    assert run_probe("(call $close_file (i32.const 0))") == "-1"
    closed_read = """(local.set $h (call $open_input (local.get $in))) (drop (call $close_file (local.get $h)))
        (call $read_file (local.get $h) (i32.const 512) (i32.const 4))"""
    assert run_probe(closed_read) == "-1"


def test_unknown_data_names_get_minus_one() -> None:
    assert run_probe("(call $open_input (i32.const 300))") == "-1"
    assert run_probe("(call $create_output (i32.const 300))") == "-1"
    assert run_probe("(call $create_output (local.get $in))") == "-1"  # an input is not an output


def test_handle_allocations_are_capped() -> None:
    body = """(local.set $h (call $open_input (local.get $in))) (drop (call $close_file (local.get $h)))
        (drop (call $open_input (local.get $in)))
        (local.set $r (call $open_input (local.get $in)))
        (i32.add (i32.mul (local.get $r) (i32.const 100)) (call $open_input (local.get $in)))"""
    assert run_probe(body, limits=WasmLimits(memory_bytes=1 << 20, fuel=1_000_000, max_handles=3)) == "299"


def test_failed_opens_use_no_handle() -> None:
    body = "(drop (call $open_input (i32.const 300))) (call $open_input (local.get $in))"
    assert run_probe(body) == "1"


# -- argv placement -------------------------------------------------------------------------


def test_argv_is_null_terminated_and_placed_in_new_pages_without_malloc() -> None:
    assert run_probe("(local.get $argv)") == "65536"
    assert run_probe("(i32.load offset=16 (local.get $argv))") == "0"
    assert run_probe("(local.get $argc)") == "4"


def test_argv_uses_the_module_malloc() -> None:
    malloc = '(func (export "malloc") (param i32) (result i32) (i32.const 4096))'
    assert run_probe("(local.get $argv)", extra=malloc) == "4096"
    # The strings follow the pointer table: argv[0] = "in" right after 5 pointers.
    assert run_probe("(i32.load offset=0 (local.get $argv))", extra=malloc) == str(4096 + 20)
    assert run_probe("(i32.load8_u (local.get $in))", extra=malloc) == str(ord("d"))


def test_argv_falls_back_when_malloc_fails() -> None:
    malloc = '(func (export "malloc") (param i32) (result i32) (i32.const 0))'
    assert run_probe("(local.get $argv)", extra=malloc) == "65536"


def test_no_arguments() -> None:
    assert run_wasm(bare("local.get 0"), {}, MemoryRuntime()) == "0"
