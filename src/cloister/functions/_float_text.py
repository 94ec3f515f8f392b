"""f64 as text the way Teaclave's Rust built-ins read and write it: comma-separated rows parsed like
``str::parse::<f64>``, numbers printed like serde_json (ryu) and like ``{:?}``.

Rows are read in blocks: a block of plain ASCII numbers goes through numpy in one call; anything
unusual (spaces, CR, blank lines, bad fields) is re-read line by line to fail exactly as Rust does.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from cloister.functions import FunctionError
from cloister.functions._text import INVALID_UTF8

_BLOCK = 1 << 22
# Everything a block may hold for the one-call numpy path; all else takes the exact path.
_PLAIN = b"0123456789+-.eEinfatyINFATY,\n"
# Rust's char::is_whitespace (Unicode White_Space), which str::trim removes (Python's str.strip
# would also strip U+001C..U+001F).
RUST_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
# What Rust's f64::from_str and f32::from_str accept (no surrounding spaces, no underscores, no hex).
FLOAT_PATTERN = r"[+-]?(?:inf|infinity|nan|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?)"
_RUST_FLOAT = re.compile(FLOAT_PATTERN, re.IGNORECASE)


def read_float_rows(stream: BinaryIO, columns: int) -> np.ndarray:
    """Every line of ``stream`` as ``columns`` f64 values: an array of shape (lines, columns).

    Lines are trimmed; failures are Teaclave's: ``Empty line``, Rust's float parse errors
    (``invalid float literal``), then ``Data format error: column len = X, expected = Y``.
    """
    parts = []
    for block in _blocks(stream):
        values = _fast_block(block, columns)
        parts.append(values if values is not None else _exact_block(block, columns))
    if not parts:
        return np.empty((0, columns))
    return np.concatenate([np.asarray(part, dtype=np.float64).reshape(len(part), columns) for part in parts])


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    """Whole lines, each block ending with ``\\n`` (one is added to a last line that lacks it)."""
    pending = b""
    while block := stream.read(_BLOCK):
        data = pending + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        pending = data[cut:]
    if pending:
        yield pending + b"\n"


def _fast_block(block: bytes, columns: int) -> np.ndarray | None:
    """The block's values when it is plainly well formed, else None (the exact path decides)."""
    if columns < 1:
        return None
    if b"\r" in block:
        if block.count(b"\r") != block.count(b"\r\n"):
            return None
        block = block.replace(b"\r\n", b"\n")
    if block.translate(None, _PLAIN) or block.startswith(b"\n") or b"\n\n" in block:
        return None
    raw = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    commas = np.searchsorted(np.flatnonzero(raw == ord(",")), ends)
    if (np.diff(commas, prepend=0) != columns - 1).any():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(block.replace(b"\n", b","), sep=",")
    except (ValueError, DeprecationWarning):
        return None
    if values.size != ends.size * columns:
        return None
    return values.reshape(ends.size, columns)


def _exact_block(block: bytes, columns: int) -> list[list[float]]:
    rows = []
    for raw in block.split(b"\n")[:-1]:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FunctionError(INVALID_UTF8) from None
        line = rust_trim(line)
        if not line:
            raise FunctionError("Empty line")
        row = [_parse_f64(field) for field in line.split(",")]
        if len(row) != columns:
            raise FunctionError(f"Data format error: column len = {len(row)}, expected = {columns}")
        rows.append(row)
    return rows


def rust_trim(text: str) -> str:
    return text.strip(RUST_WHITESPACE)


def check_float(text: str) -> None:
    """Raise ``FunctionError`` with ``ParseFloatError``'s text unless Rust would parse ``text`` as a float."""
    if not _RUST_FLOAT.fullmatch(text):
        raise FunctionError("invalid float literal" if text else "cannot parse float from empty string")


def _parse_f64(field: str) -> float:
    check_float(field)
    return float(field)


def _shortest(value: float) -> tuple[str, str, int]:
    """(sign, digits, exponent) of the shortest round-trip decimal: value = ±0.d1d2… * 10**exponent."""
    text = repr(abs(value))
    mantissa, _, power = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    exponent = int(power or 0) + len(whole) - (len(whole + fraction) - len((whole + fraction).lstrip("0")))
    return ("-" if math.copysign(1.0, value) < 0 else ""), digits.rstrip("0"), exponent


def ryu_layout(sign: str, digits: str, exponent: int, *, positional_below: int, positional_from: int) -> str:
    """How the ryu crate lays out ±0.digits * 10**exponent: positional while ``positional_from <
    exponent <= positional_below`` (``100.0``, ``1.5``, ``0.001``), scientific otherwise (``1e-7``)."""
    if len(digits) <= exponent <= positional_below:
        return f"{sign}{digits}{'0' * (exponent - len(digits))}.0"
    if 0 < exponent <= positional_below:
        return f"{sign}{digits[:exponent]}.{digits[exponent:]}"
    if positional_from < exponent <= 0:
        return f"{sign}0.{'0' * -exponent}{digits}"
    return _scientific(sign, digits, exponent)


def _scientific(sign: str, digits: str, exponent: int) -> str:
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{exponent - 1}"


def serde_json_f64(value: float) -> str:
    """serde_json's text of an f64 (ryu): ``0.3``, ``100.0``, ``0.00001``, ``1e-7``, ``1.5e16``; NaN, inf: ``null``."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, digits, exponent = _shortest(value)
    return ryu_layout(sign, digits, exponent, positional_below=16, positional_from=-5)


def debug_f64(value: float) -> str:
    """Rust's ``{:?}`` of an f64: shortest round-trip, ``1.0`` not ``1``, exponent below 1e-4 and from 1e16."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) < 1e-4 or abs(value) >= 1e16):
        return _scientific(*_shortest(value))
    return repr(value)  # Python's repr is positional with ".0" exactly in this range.
