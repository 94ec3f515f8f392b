"""``builtin-ordered-set-intersect`` (reference §12.7): private set intersection of two sorted lists.

Each input is one hex string per line, sorted; each output gets one ``0``/``1`` per line of its
input, ``1`` for members of the intersection. A merge-join over both streams, so ten million
lines need no more memory than two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._arguments import string
from cloister.functions._text import lines

NAME = "builtin-ordered-set-intersect"
Compare = Callable[[bytes, bytes], bool]
# order → (may follow, comes first); "desending" is Teaclave's spelling.
_ORDERS: dict[str, tuple[Compare, Compare]] = {
    "ascending": (lambda a, b: a <= b, lambda a, b: a < b),
    "desending": (lambda a, b: a >= b, lambda a, b: a > b),
}


def _elements(stream: BinaryIO, in_order: Compare) -> Iterator[bytes]:
    previous: bytes | None = None
    for line in lines(stream):
        try:
            element = bytes.fromhex(line.strip())
        except ValueError:
            raise FunctionError("Invalid hex string") from None
        if previous is not None and not in_order(previous, element):
            raise FunctionError("Invalid ordering")
        previous = element
        yield element


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    with runtime.create_output("output_result1") as out1, runtime.create_output("output_result2") as out2:
        order = _ORDERS.get(string(arguments, "order"))
        if order is None:
            raise FunctionError("Invalid order")
        in_order, before = order
        with runtime.open_input("input_data1") as in1, runtime.open_input("input_data2") as in2:
            first, second = _elements(in1, in_order), _elements(in2, in_order)
            common = _merge(first, second, before, out1, out2)
    return f"{common} common items"


def _merge(first: Iterator[bytes], second: Iterator[bytes], before: Compare, out1: BinaryIO, out2: BinaryIO) -> int:
    common = 0
    a, b = next(first, None), next(second, None)
    while a is not None and b is not None:
        if a == b:
            out1.write(b"1")
            out2.write(b"1")
            common += 1
            a, b = next(first, None), next(second, None)
        elif before(a, b):
            out1.write(b"0")
            a = next(first, None)
        else:
            out2.write(b"0")
            b = next(second, None)
    while a is not None:
        out1.write(b"0")
        a = next(first, None)
    while b is not None:
        out2.write(b"0")
        b = next(second, None)
    return common
