"""A task's log from what its function printed: every line, or as much as the limit holds and a notice."""

from __future__ import annotations

from cloister.executors import task_log


def test_printed_lines_are_the_log() -> None:
    assert task_log(b"first\nsecond\r\nthird", limit=100, dropped=False) == ("first", "second", "third")
    assert task_log(b"", limit=100, dropped=False) == ()


def test_undecodable_output_is_replaced_not_fatal() -> None:
    assert task_log(b"caf\xc3\xa9 \xff\n", limit=100, dropped=False) == ("caf\u00e9 \ufffd",)


def test_dropped_output_ends_with_a_notice_and_stays_within_the_limit() -> None:
    printed = b"".join(b"line %d\n" % i for i in range(1000))[:4096]
    log = task_log(printed, limit=4096, dropped=True)
    assert log[0] == "line 0"
    assert log[-1].startswith("[WARN cloister] task log truncated") and "4096 bytes" in log[-1]
    assert len("\n".join(log).encode()) <= 4096
    assert all(line.startswith("line ") for line in log[:-1])


def test_control_characters_are_shown_escaped_so_a_log_cannot_drive_a_terminal() -> None:
    printed = b"clear\x1b[2J screen\tand tab\x07\n\x9b is not C1 here\n"
    assert task_log(printed, limit=1000, dropped=False) == (
        "clear\\x1b[2J screen\tand tab\\x07",
        "\ufffd is not C1 here",
    )
    assert task_log("caf\u00e9 \u0085end".encode(), limit=1000, dropped=False) == ("caf\u00e9 ", "end")
