"""``builtin-ordered-set-join``: Teaclave's fixture, the Rust csv crate's reading and writing rules, errors, scale."""

from __future__ import annotations

import time

import pytest
from memory_runtime import MemoryRuntime
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.functions import FunctionError, builtin_functions

FUNCTIONS = TEACLAVE_FIXTURES / "functions"
JOIN = {"left_column": 0, "right_column": 0, "ascending": True, "drop": True}


def join(first: bytes, second: bytes, **arguments: object) -> tuple[str, bytes]:
    runtime = MemoryRuntime({"input_data1": first, "input_data2": second}, ("output_result",))
    summary = builtin_functions()["builtin-ordered-set-join"].run({**JOIN, **arguments}, runtime)
    return summary, runtime.outputs["output_result"]


def failure(first: bytes, second: bytes, **arguments: object) -> str:
    with pytest.raises(FunctionError) as caught:
        join(first, second, **arguments)
    return caught.value.reason


def test_teaclave_fixture() -> None:
    directory = FUNCTIONS / "ordered_set_join"
    summary, output = join((directory / "join0.csv").read_bytes(), (directory / "join1.csv").read_bytes())
    assert summary == "120 records"
    expected = (FUNCTIONS / "gbdt_training" / "train.txt").read_bytes()
    assert output.strip() == expected.strip()
    assert output == expected  # even the trailing newline


def test_keep_key_and_descending_order() -> None:
    first = b"9,a\n7,b\n5,c\n3,d\n"
    second = b"8,x,p\n7,y,q\n3,z,r\n1,w,s\n"
    assert join(first, second, ascending=False, drop=False) == ("2 records", b"7,b,y,q\n3,d,z,r\n")
    assert join(first, second, ascending=False, left_column=0, right_column=0) == ("2 records", b"b,y,q\nd,z,r\n")


def test_other_columns_and_stop_at_first_exhausted_input() -> None:
    first = b"x,1\ny,2\nz,3\n"
    second = b"1,p\n3,q\n3,r\n"
    # 3 matches once: equal records advance both sides, and the join stops when input1 ends.
    assert join(first, second, left_column=1) == ("2 records", b"x,p\nz,q\n")


def test_keys_compare_as_utf8_bytes() -> None:
    # U+FFFD sorts before U+10000 in UTF-8 (and code points), after it in UTF-16: a UTF-16 order
    # would advance input2 past its only record and find nothing.
    first = "\ufffd,1\n\U00010000,2\n".encode()
    second = "\U00010000,y\n".encode()
    assert join(first, second) == ("1 records", b"2,y\n")


def test_reading_follows_the_csv_crate() -> None:
    first = (
        b'\xef\xbb\xbf"k1",plain\r\n'  # byte-order mark skipped, CRLF
        b"\n\r\n"  # blank lines are not records
        b'k2,"quoted ""x"", y"\r'  # lone CR ends a record
        b'k3,"ab"cd\n'  # text after a closing quote is kept
        b'k4,a"b\n'  # a quote inside an unquoted field is literal
        b'k5,"multi\r\nline\rfield"\n'
        b'k6,"unterminated'
    )
    second = b"k1\nk2\nk3\nk4\nk5\nk6"
    summary, output = join(first, second)
    assert summary == "6 records"
    assert output == b'plain\n"quoted ""x"", y"\nabcd\n"a""b"\n"multi\r\nline\rfield"\nunterminated\n'


def test_writing_follows_the_csv_crate() -> None:
    # Empty records become "" (the crate's writer), a lone empty field too; \r alone forces quotes.
    assert join(b"k\n", b"k\n") == ("1 records", b'""\n')
    assert join(b"k,\n", b"k\n") == ("1 records", b'""\n')
    assert join(b"k,,\n", b"k,\n") == ("1 records", b",,\n")
    assert join(b'k,"a\rb"\n', b"k\n")[1] == b'"a\rb"\n'


def test_quotes_split_utf8_bytes_within_a_valid_field() -> None:
    # The crate checks UTF-8 per field after unquoting: "\xc3"\xa9 is the field b"\xc3\xa9", i.e. "é".
    assert join(b'k,"\xc3"\xa9\n', b"k\n")[1] == "é\n".encode()


def test_large_fields() -> None:
    field = "v" * 300_000  # beyond Python's default csv field size limit
    assert join(f"k,{field}\n".encode(), b"k\n")[1] == f"{field}\n".encode()


def test_errors_are_raised_only_for_records_read() -> None:
    # input1's malformed third record is never read: the join stops when input2 ends.
    assert join(b"a,1\nb,2\nc\n", b"a\n") == ("1 records", b"1\n")


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        (b"", b"a\n", "input1 is empty"),
        (b"\n\r\n\n", b"a\n", "input1 is empty"),
        (b"a\n", b"", "input2 is empty"),
        (b"", b"", "input1 is empty"),
        (b"a,b\n", b"", "input2 is empty"),
    ],
)
def test_empty_inputs(first: bytes, second: bytes, reason: str) -> None:
    assert failure(first, second) == reason


def test_invalid_index() -> None:
    assert failure(b"a,b\n", b"a\n", left_column=2) == "invalid index"
    assert failure(b"a,b\n", b"a\n", right_column=1) == "invalid index"


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"a,b\nc\n", "record 1 (line: 2, byte: 4): found record with 1 fields, but the previous record has 2"),
        (b"a,b\r\nc\r\n", "record 1 (line: 1, byte: 4): found record with 1 fields, but the previous record has 2"),
        (b"a,b\n\n\nc,d,e\n", "record 1 (line: 2, byte: 4): found record with 3 fields, but the previous record has 2"),
        (b'a,b\rc,d\r"e\nf",g\rh\n', "record 3 (line: 2, byte: 16): found record with 1 fields"),
    ],
)
def test_unequal_lengths(first: bytes, reason: str) -> None:
    # Keys never match, so every record is read; positions are the crate's (record from 0, line, byte).
    assert failure(first, b"zz\n").startswith(f"CSV error: {reason}")


def test_invalid_utf8() -> None:
    reason = failure(b"a,b\nc,d\xff\xfe\n", b"zz\n")
    assert reason == (
        "CSV parse error: record 1 (line 2, field: 1, byte: 4): "
        "invalid utf-8: invalid UTF-8 in field 1 near byte index 1"
    )
    assert failure(b"\xef\xbb\xbf\xe2\x82\n", b"zz\n").endswith(
        "(line 1, field: 0, byte: 0): invalid utf-8: invalid UTF-8 in field 0 near byte index 0"
    )


@pytest.mark.parametrize(
    "arguments",
    [
        {"left_column": -1},
        {"left_column": 1.0},
        {"right_column": "0"},
        {"right_column": True},
        {"left_column": 2**64},
        {"ascending": "true"},
        {"drop": 1},
        {"drop": None},
    ],
)
def test_arguments(arguments: dict) -> None:
    assert failure(b"a\n", b"a\n", **arguments) == "Cannot deserialize arguments"


def test_scale_one_million_records_each() -> None:
    count = 1_000_000
    first = "".join(f"{2 * i:08d},left{i}\n" for i in range(count)).encode()
    second = "".join(f"{3 * i:08d},right{i},{i % 7}\n" for i in range(count)).encode()
    started = time.perf_counter()
    summary, output = join(first, second, drop=False)
    elapsed = time.perf_counter() - started
    print(f"joined 2 x {count} records in {elapsed:.2f} s")
    common = len(range(0, 2 * count, 6))
    assert summary == f"{common} records"
    assert output.count(b"\n") == common
    assert output.startswith(b"00000000,left0,right0,0\n00000006,left3,right2,2\n")
