"""Line reading as Rust's ``BufRead::lines()``: split on ``\\n``, drop a trailing ``\\r``, keep a last
line without newline, and refuse invalid UTF-8. Streams, so inputs of any size fit in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from cloister.functions import FunctionError

INVALID_UTF8 = "stream did not contain valid UTF-8"


def lines(stream: BinaryIO) -> Iterator[str]:
    for raw in stream:
        if raw.endswith(b"\n"):
            raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FunctionError(INVALID_UTF8) from None
