"""``builtin-ordered-set-join`` (reference §12.8): merge-join two headerless CSV files sorted on a key column.

CSV is read as Rust's ``csv`` crate reads it by default and written as its writer writes it, error texts
included. Both inputs and the output are streamed, so ten million records need memory for a few only.

Python's ``csv`` module parses the fields (its non-strict rules match csv-core's), but it is fed pieces
split here, for three things it does not do: skip blank lines, track the crate's record positions for error
texts, and check UTF-8 per field (a record is rejected only if a field is invalid, as the crate does).
Its writer is not used: it does not quote a lone ``\\r`` and writes an empty record as a blank line.
"""

from __future__ import annotations

import codecs
import csv
import re
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._arguments import boolean, unsigned

NAME = "builtin-ordered-set-join"
_BATCH = 4096  # output records per write
_NEEDS_QUOTES = re.compile('[",\r\n]')


class _Pieces:
    """The input as the text pieces csv-core sees as lines: each ends at ``\\n``, ``\\r\\n`` or a lone ``\\r``.

    ``end`` is where the crate's reader stands after the last piece: it consumes the ``\\r`` of a ``\\r\\n``
    with the record and the ``\\n`` with the next one, so a record's position is counted that way too.
    A piece that is not UTF-8 is decoded with ``surrogateescape`` and sets ``tainted``, for the record
    holding it to be checked field by field.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.end = (0, 1)  # (byte offset, line number) as csv::Position counts them
        self.tainted = False

    def __iter__(self) -> Iterator[str]:
        offset, line, first = 0, 1, True
        for raw in self._stream:
            if first:
                first = False
                if raw.startswith(codecs.BOM_UTF8):  # the crate skips a leading byte-order mark
                    offset = 3
                    raw = raw[3:]
            cr = raw.find(b"\r")
            crlf_only = cr == -1 or (cr == len(raw) - 2 and raw.endswith(b"\n"))
            for piece in (raw,) if crlf_only else _split_lone_cr(raw):
                offset += len(piece)
                if piece.endswith(b"\n"):
                    line += 1
                    self.end = (offset - 1, line - 1) if piece.endswith(b"\r\n") else (offset, line)
                else:
                    self.end = (offset, line)
                try:
                    yield piece.decode("utf-8")
                except UnicodeDecodeError:
                    self.tainted = True
                    yield piece.decode("utf-8", "surrogateescape")


def _split_lone_cr(raw: bytes) -> Iterator[bytes]:
    start = 0
    while start < len(raw):
        cr = raw.find(b"\r", start)
        if cr == -1 or raw[cr + 1 : cr + 2] == b"\n":
            yield raw[start:]
            return
        yield raw[start : cr + 1]
        start = cr + 1


def _records(stream: BinaryIO) -> Iterator[list[str]]:
    """The non-empty records of ``stream``, each as wide as the first (the crate's non-flexible reader)."""
    pieces = _Pieces(stream)
    width: int | None = None
    index = 0
    start = pieces.end
    try:
        for record in csv.reader(pieces):
            if not record:
                continue
            if width is None:
                width = len(record)
            elif len(record) != width:
                byte_offset, line = start
                raise FunctionError(
                    f"CSV error: record {index} (line: {line}, byte: {byte_offset}): found record with "
                    f"{len(record)} fields, but the previous record has {width} fields"
                )
            if pieces.tainted:
                pieces.tainted = False
                _check_utf8(record, index, start)
            index += 1
            start = pieces.end
            yield record
    except csv.Error as error:  # not expected: pieces never hold an unquoted newline
        raise FunctionError(f"CSV parse error: {error}") from None


def _check_utf8(record: list[str], index: int, start: tuple[int, int]) -> None:
    """Decode a record's escaped fields in place, or fail as the crate's ``StringRecord`` does."""
    for number, field in enumerate(record):
        raw = field.encode("utf-8", "surrogateescape")
        try:
            record[number] = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            byte_offset, line = start
            raise FunctionError(
                f"CSV parse error: record {index} (line {line}, field: {number}, byte: {byte_offset}): "
                f"invalid utf-8: invalid UTF-8 in field {number} near byte index {error.start}"
            ) from None


def _encode(record: list[str]) -> str:
    """One record as csv-core's default writer puts it: quotes only where needed, ``""`` if empty."""
    text = ",".join(record)
    if text.count(",") != len(record) - 1 or _NEEDS_QUOTES.search(text):
        text = ",".join(_quote(field) if _NEEDS_QUOTES.search(field) else field for field in record)
    return f"{text}\n" if text else '""\n'


def _quote(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    left = unsigned(arguments, "left_column")
    right = unsigned(arguments, "right_column")
    ascending = boolean(arguments, "ascending")
    drop = boolean(arguments, "drop")
    # The crate has no field size limit; Python's default (128 KiB) would refuse data Teaclave accepts.
    csv.field_size_limit(sys.maxsize)
    with (
        runtime.open_input("input_data1") as in1,
        runtime.open_input("input_data2") as in2,
        runtime.create_output("output_result") as out,
    ):
        first, second = _records(in1), _records(in2)
        record1 = next(first, None)
        if record1 is None:
            raise FunctionError("input1 is empty")
        record2 = next(second, None)
        if record2 is None:
            raise FunctionError("input2 is empty")
        count = _join(first, second, record1, record2, (left, right, ascending, drop), out)
    return f"{count} records"


def _join(
    first: Iterator[list[str]],
    second: Iterator[list[str]],
    record1: list[str] | None,
    record2: list[str] | None,
    options: tuple[int, int, bool, bool],
    out: BinaryIO,
) -> int:
    left, right, ascending, drop = options
    count = 0
    batch: list[str] = []
    while record1 is not None and record2 is not None:
        if left >= len(record1) or right >= len(record2):
            raise FunctionError("invalid index")
        key1, key2 = record1[left], record2[right]
        # str order is code-point order, which is the UTF-8 byte order Rust's str::cmp uses.
        if key1 == key2:
            head = record1[:left] + record1[left + 1 :] if drop else record1
            batch.append(_encode(head + record2[:right] + record2[right + 1 :]))
            count += 1
            if len(batch) == _BATCH:
                out.write("".join(batch).encode("utf-8"))
                batch.clear()
            record1 = next(first, None)
            record2 = next(second, None) if record1 is not None else record2
        elif (key1 < key2) == ascending:
            record1 = next(first, None)
        else:
            record2 = next(second, None)
    out.write("".join(batch).encode("utf-8"))
    return count
