"""``builtin-private-join-and-compute`` (reference §12.12): who appears in every party's data, and their total.

Each party's input holds ``identity: amount`` lines; every party's output receives the same
``identity, sum`` lines for the identities all parties share. Amounts add as Rust's u32 does in a
release build (wrapping).
"""

from __future__ import annotations

import re
from typing import Any

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._arguments import unsigned
from cloister.functions._text import lines

NAME = "builtin-private-join-and-compute"
_U32 = 2**32
_U32_TEXT = re.compile(r"\+?[0-9]+")  # what Rust's u32::from_str accepts


def _amounts(runtime: FileRuntime, name: str) -> dict[str, int]:
    amounts: dict[str, int] = {}
    with runtime.open_input(name) as stream:
        for raw in lines(stream):
            line = raw.strip()
            if len(line) < 3:
                continue
            parts = line.split(":")
            if len(parts) != 2:
                continue
            amount = parts[1].strip()
            if not _U32_TEXT.fullmatch(amount) or int(amount) >= _U32:
                continue
            amounts[parts[0].strip()] = int(amount)
    return amounts


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    parties = unsigned(arguments, "num_user")
    if parties < 2:
        raise FunctionError("The demo requires at least two parties!")
    tables = [_amounts(runtime, f"input_data{i}") for i in range(parties)]
    shared = set(tables[0]).intersection(*tables[1:])
    report = "".join(f"{identity}, {sum(t[identity] for t in tables) % _U32}\n" for identity in sorted(shared))
    for i in range(parties):
        with runtime.create_output(f"output_data{i}") as stream:
            stream.write(report.encode())
    return f"{parties} users join the task in total."
