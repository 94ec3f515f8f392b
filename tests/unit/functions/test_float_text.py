"""Rust-compatible f64 text: row parsing (numpy path and exact path agree) and serde_json / ``{:?}`` output."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from cloister.functions import FunctionError, _float_text
from cloister.functions._float_text import debug_f64, read_float_rows, serde_json_f64


def rows(data: bytes, columns: int) -> list[list[float]]:
    return read_float_rows(io.BytesIO(data), columns).tolist()


@pytest.mark.parametrize(
    ("value", "serde", "debug"),
    [
        (0.3, "0.3", "0.3"),
        (100.0, "100.0", "100.0"),
        (-2.4154563605850874, "-2.4154563605850874", "-2.4154563605850874"),
        (1e15, "1000000000000000.0", "1000000000000000.0"),
        (1e16, "1e16", "1e16"),
        (1.5e16, "1.5e16", "1.5e16"),
        (9999999999999998.0, "9999999999999998.0", "9999999999999998.0"),
        (0.0001, "0.0001", "0.0001"),
        (1e-5, "0.00001", "1e-5"),
        (-1.234e-5, "-0.00001234", "-1.234e-5"),
        (1e-6, "1e-6", "1e-6"),
        (1e-7, "1e-7", "1e-7"),
        (5e-324, "5e-324", "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e308", "1.7976931348623157e308"),
        (0.0, "0.0", "0.0"),
        (-0.0, "-0.0", "-0.0"),
        (float("nan"), "null", "NaN"),
        (float("inf"), "null", "inf"),
        (float("-inf"), "null", "-inf"),
    ],
)
def test_formats(value: float, serde: str, debug: str) -> None:
    assert (serde_json_f64(value), debug_f64(value)) == (serde, debug)


def test_formats_round_trip() -> None:
    generator = random.Random(3)
    for _ in range(2000):
        value = generator.uniform(-1, 1) * 10.0 ** generator.randint(-30, 30)
        assert float(serde_json_f64(value)) == value == float(debug_f64(value))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"1,2\n3,4", [[1.0, 2.0], [3.0, 4.0]]),
        (b"1,2\r\n3,4\r\n", [[1.0, 2.0], [3.0, 4.0]]),
        (b"\t1,2 \n", [[1.0, 2.0]]),
        (b"1.,.5\n+1e3,-1E-3\n", [[1.0, 0.5], [1000.0, -0.001]]),
        (b"1,2\r", [[1.0, 2.0]]),
        (b"\xe3\x80\x801,2\n", [[1.0, 2.0]]),  # U+3000 is whitespace to Rust's trim
        (b"", []),
    ],
)
def test_rows(data: bytes, expected: list) -> None:
    assert rows(data, 2) == expected


def test_special_values() -> None:
    parsed = read_float_rows(io.BytesIO(b"nan,-inf,Infinity,+NaN\n"), 4)
    assert np.isnan(parsed[0, 0]) and parsed[0, 1] == -np.inf and parsed[0, 2] == np.inf and np.isnan(parsed[0, 3])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"1,2\n\n", "Empty line"),
        (b"\n1,2\n", "Empty line"),
        (b"1, 2\n", "invalid float literal"),
        (b"1_0,2\n", "invalid float literal"),
        (b"0x10,2\n", "invalid float literal"),
        (b"1e,2\n", "invalid float literal"),
        (b"1,2,\n", "cannot parse float from empty string"),
        (b"1,2,x\n", "invalid float literal"),  # parsing fails before the count is checked
        (b"1,2,3\n", "Data format error: column len = 3, expected = 2"),
        (b"1\n", "Data format error: column len = 1, expected = 2"),
        (b"1,\xff\n", "stream did not contain valid UTF-8"),
        (b"1,2\n\n\xff\n", "Empty line"),  # the first bad line wins
    ],
)
def test_row_errors(data: bytes, reason: str) -> None:
    with pytest.raises(FunctionError, match=f"^{reason}$"):
        rows(data, 2)


def test_blocks_split_between_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = random.Random(5)
    table = [[generator.uniform(-1e6, 1e6) for _ in range(3)] for _ in range(500)]
    lines = [",".join(repr(v) for v in row) for row in table]
    lines[123] = f" {lines[123]}\r"  # forces the exact path for its block only
    data = "\n".join(lines).encode()
    monkeypatch.setattr(_float_text, "_BLOCK", 97)
    assert rows(data, 3) == table
    monkeypatch.setattr(_float_text, "_BLOCK", 5)  # shorter than a line
    assert rows(data, 3) == table
    with pytest.raises(FunctionError, match=r"^Empty line$"):
        rows(data + b"\n\n", 3)
