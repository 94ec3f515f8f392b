"""What the console's pages share: showing hidden characters, reading numbers, counting live streams."""

from __future__ import annotations

import pytest

from cloister.console.kit import reveal_hidden, whole_number
from cloister.console.tasks import StreamCount, _event


def test_invisible_formatting_characters_are_shown_and_everything_is_escaped() -> None:
    shown = str(reveal_hidden('return "ok"\u202e # )"(lave\u200b<script>x</script>'))
    assert "\u202e" not in shown and "\u200b" not in shown
    assert '<mark class="hidden-char" title="RIGHT-TO-LEFT OVERRIDE">U+202E</mark>' in shown
    assert '<mark class="hidden-char" title="ZERO WIDTH SPACE">U+200B</mark>' in shown
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert str(reveal_hidden("plain text, é and 中文")) == "plain text, é and 中文"


def test_line_separators_and_control_characters_are_shown_but_tabs_and_line_ends_kept() -> None:
    shown = str(reveal_hidden("a\u2028b\u2029c\x85d\x1be"))
    for code in ("U+2028", "U+2029", "U+0085", "U+001B"):
        assert f">{code}</mark>" in shown
    assert not any(char in shown for char in "\u2028\u2029\x85\x1b")
    assert str(reveal_hidden("def f():\r\n\treturn 1\n")) == "def f():\r\n\treturn 1\n"


@pytest.mark.parametrize(
    ("text", "most", "value"),
    [("0", 10, 0), ("10", 10, 10), ("11", 10, None), ("²", 10, None), ("-1", 10, None), ("1e3", 10**6, None),
     ("9" * 400, 2**63 - 1, None), ("", 10, None), ("٣", 10, None)],
)  # fmt: skip
def test_whole_numbers_are_ascii_digits_within_range(text: str, most: int, value: int | None) -> None:
    assert whole_number(text, most) == value


def test_live_streams_are_limited_in_all_and_per_user() -> None:
    count = StreamCount(limit=3, per_user=2)
    assert count.open("bob") and count.open("bob")
    assert not count.open("bob")  # bob's own limit
    assert count.open("eve")
    assert not count.open("carol")  # the console's limit
    count.close("bob")
    assert count.open("carol")
    count.close("eve")
    assert count.open("bob")
    assert not count.open("bob")


def test_an_event_splits_lines_only_where_the_event_stream_does() -> None:
    event = _event("task", "a\u2028b\r\nc\rd\ne")
    assert event == "event: task\ndata: a\u2028b\ndata: c\ndata: d\ndata: e\n\n"
