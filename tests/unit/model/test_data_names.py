"""Data names are names: the execution service numbers its files, but a name that looks like a
path is refused wherever it enters, naming it."""

from __future__ import annotations

import pytest

from cloister.errors import InvalidArgumentError, InvalidDataNameError
from cloister.model.files import parse_data_name


@pytest.mark.parametrize(
    "name", ["input_data", "output_data1", "pf_in_a", "Training-Set.v2", "a", "x" * 128, "-dash", "_"]
)
def test_names_teaclave_uses_and_their_like_are_accepted(name: str) -> None:
    assert parse_data_name(name, "function inputs") == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../../etc/passwd", "/etc/shadow", "a/b", "a\\b", "x\x00y", ".hidden", "x" * 129, "tab\there",
     "naïve", "space name", "a\nb"],
)  # fmt: skip
def test_anything_else_is_refused_naming_it(name: str) -> None:
    with pytest.raises(InvalidDataNameError) as caught:
        parse_data_name(name, "outputs_ownership")
    assert isinstance(caught.value, InvalidArgumentError)  # INVALID_ARGUMENT on the wire
    assert "outputs_ownership" in caught.value.message
    assert repr(name[:64]).strip("'\"")[:20] in caught.value.message
