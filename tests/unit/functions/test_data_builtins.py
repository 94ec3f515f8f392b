"""Password check, ordered-set intersection and private join, on Teaclave's fixtures and edge cases."""

from __future__ import annotations

import pytest
from memory_runtime import MemoryRuntime
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.functions import FunctionError, builtin_functions

FUNCTIONS = TEACLAVE_FIXTURES / "functions"


def run(name: str, arguments: dict, runtime: MemoryRuntime) -> str:
    return builtin_functions()[name].run(arguments, runtime)


def test_password_check_fixture() -> None:
    runtime = MemoryRuntime(
        {
            "password": (FUNCTIONS / "password_check" / "password.txt").read_bytes(),
            "exposed_passwords": (FUNCTIONS / "password_check" / "exposed_passwords.txt").read_bytes(),
        }
    )
    assert run("builtin-password-check", {}, runtime) == "true"
    runtime.inputs["password"] = b"correct horse battery staple\n"
    assert run("builtin-password-check", {}, runtime) == "false"


def test_ordered_set_intersect_fixture() -> None:
    directory = FUNCTIONS / "ordered_set_intersect"
    runtime = MemoryRuntime(
        {"input_data1": (directory / "psi0.txt").read_bytes(), "input_data2": (directory / "psi1.txt").read_bytes()},
        ("output_result1", "output_result2"),
    )
    assert run("builtin-ordered-set-intersect", {"order": "ascending"}, runtime) == "3 common items"
    assert runtime.outputs == {"output_result1": b"0101010", "output_result2": b"01101"}


@pytest.mark.parametrize(
    ("arguments", "first", "second", "reason"),
    [
        ({"order": "sideways"}, b"", b"", "Invalid order"),
        ({}, b"", b"", "Cannot deserialize arguments"),
        ({"order": "ascending"}, b"02\n01\n", b"", "Invalid ordering"),
        ({"order": "desending"}, b"01\n02\n", b"", "Invalid ordering"),
        ({"order": "ascending"}, b"zz\n", b"", "Invalid hex string"),
        ({"order": "ascending"}, b"\xff\n", b"", "stream did not contain valid UTF-8"),
    ],
)
def test_ordered_set_intersect_errors(arguments: dict, first: bytes, second: bytes, reason: str) -> None:
    runtime = MemoryRuntime({"input_data1": first, "input_data2": second}, ("output_result1", "output_result2"))
    with pytest.raises(FunctionError, match=f"^{reason}$"):
        run("builtin-ordered-set-intersect", arguments, runtime)


def test_ordered_set_intersect_descending_and_tails() -> None:
    runtime = MemoryRuntime(
        {"input_data1": b"ff\nee\n0a\n01", "input_data2": b"ee\r\n0b\n01\n00\n"}, ("output_result1", "output_result2")
    )
    assert run("builtin-ordered-set-intersect", {"order": "desending"}, runtime) == "2 common items"
    assert runtime.outputs == {"output_result1": b"0101", "output_result2": b"1010"}


def test_private_join_and_compute_fixture() -> None:
    directory = FUNCTIONS / "private_join_and_compute" / "three_party_data"
    inputs = {f"input_data{i}": (directory / f"bank_{c}.txt").read_bytes() for i, c in enumerate("abc")}
    runtime = MemoryRuntime(inputs, ("output_data0", "output_data1", "output_data2"))
    assert run("builtin-private-join-and-compute", {"num_user": 3}, runtime) == "3 users join the task in total."
    for output in runtime.outputs.values():
        assert sorted(output.decode().splitlines()) == ["c, 470000", "e, 5033000"]


def test_private_join_and_compute_rules() -> None:
    runtime = MemoryRuntime(
        {"input_data0": b"a: 1\nb:2\nxx\nc: nope\na:5\nd: 4294967295\n", "input_data1": b" a : 10 \nb:+3\nd:1\n"},
        ("output_data0", "output_data1"),
    )
    run("builtin-private-join-and-compute", {"num_user": 2}, runtime)
    assert runtime.outputs["output_data0"] == b"a, 15\nb, 5\nd, 0\n"  # later duplicates win; u32 wraps
    with pytest.raises(FunctionError, match="at least two parties"):
        run("builtin-private-join-and-compute", {"num_user": 1}, runtime)
    with pytest.raises(FunctionError, match="Cannot deserialize arguments"):
        run("builtin-private-join-and-compute", {"num_user": "2"}, runtime)
