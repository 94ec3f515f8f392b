"""A refused request field answers INVALID_ARGUMENT naming the field, the value given and what is valid."""

from __future__ import annotations

import pytest

from cloister.errors import InvalidArgumentError, InvalidChoiceError, StatusCode, error_for_status, quoted
from cloister.model.files import CRYPTO_SCHEMAS, FileCrypto, parse_cmac
from cloister.model.functions import executor_for, parse_executor, parse_executor_type

KINDS = "builtin, python, wasm (also: mesapy, wamr)"


def test_an_unknown_executor_type_names_the_valid_ones() -> None:
    with pytest.raises(InvalidChoiceError) as refused:
        parse_executor_type("pyhton")
    assert refused.value.status is StatusCode.INVALID_ARGUMENT
    assert refused.value.message == f"executor_type 'pyhton' is not one of: {KINDS}"
    assert "ExecutorKind" not in refused.value.message


def test_an_unknown_executor_names_the_valid_ones() -> None:
    with pytest.raises(InvalidChoiceError) as refused:
        parse_executor("cobol")
    assert refused.value.message == f"executor 'cobol' is not one of: {KINDS}"


@pytest.mark.parametrize(
    ("name", "executor_type", "executor"),
    [
        ("builtin", "builtin", "builtin"),
        ("python", "python", "mesapy"),
        ("mesapy", "python", "mesapy"),
        ("wasm", "wamr", "wamr"),
        ("wamr", "wamr", "wamr"),
    ],
)
def test_every_name_of_an_executor_works_in_both_fields(name: str, executor_type: str, executor: str) -> None:
    assert parse_executor_type(name) == executor_type
    assert parse_executor(name) == executor


def test_an_executor_that_cannot_run_the_function_is_refused_naming_the_one_that_can() -> None:
    assert executor_for("python", "python") == "mesapy"
    assert executor_for("wamr", "wasm") == "wamr"
    with pytest.raises(InvalidArgumentError) as refused:
        executor_for("builtin", "mesapy")
    assert refused.value.message == (
        "executor 'mesapy' cannot run this function, whose executor_type is builtin; use executor builtin"
    )
    with pytest.raises(InvalidChoiceError, match="executor 'java' is not one of"):
        executor_for("builtin", "java")


def test_an_unknown_crypto_schema_names_the_schemas() -> None:
    with pytest.raises(InvalidChoiceError) as refused:
        FileCrypto.from_request("aes-gcm128", bytes(16), bytes(12))
    assert refused.value.message == (
        "crypto_info.schema 'aes-gcm128' is not one of: aes-gcm-128, aes-gcm-256, teaclave-file-128, raw"
    )
    assert CRYPTO_SCHEMAS == ("aes-gcm-128", "aes-gcm-256", "teaclave-file-128", "raw")


@pytest.mark.parametrize(
    ("schema", "key", "iv", "message"),
    [
        ("aes-gcm-128", b"abc", bytes(12), "crypto_info.key must be 16 bytes for aes-gcm-128, got 3"),
        ("aes-gcm-256", bytes(16), bytes(12), "crypto_info.key must be 32 bytes for aes-gcm-256, got 16"),
        ("aes-gcm-128", bytes(16), bytes(13), "crypto_info.iv must be 12 bytes for aes-gcm-128, got 13"),
        ("teaclave-file-128", bytes(16), b"x", "crypto_info.iv must be empty for teaclave-file-128, got 1 bytes"),
    ],
)
def test_key_and_iv_lengths_are_named_but_never_the_key(schema: str, key: bytes, iv: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        FileCrypto.from_request(schema, key, iv)
    assert refused.value.message == message
    assert "abc" not in refused.value.message


def test_without_a_field_name_the_message_names_the_part() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^key must be 16 bytes for aes-gcm-128, got 15$"):
        FileCrypto.from_request("aes-gcm-128", bytes(15), bytes(12), field="")


def test_a_raw_file_ignores_key_and_iv() -> None:
    assert FileCrypto.from_request("raw", b"anything", b"").schema == "raw"


def test_a_cmac_must_be_sixteen_bytes() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^cmac must be 16 bytes, got 5$"):
        parse_cmac(b"short")


def test_quoted_values_are_escaped_and_shortened() -> None:
    assert quoted("a\nb") == "'a\\nb'"
    long = quoted("x" * 500)
    assert len(long) < 80 and long.endswith("…'")


def test_a_choice_refusal_travels_as_invalid_argument() -> None:
    error = InvalidChoiceError("executor", "x", ["a", "b"], hint="see the docs")
    assert error.message == "executor 'x' is not one of: a, b; see the docs"
    again = error_for_status(error.status, error.message)
    assert type(again) is InvalidArgumentError and again.message == error.message
