"""A file runtime in memory, for testing functions without a task: inputs from bytes, outputs kept."""

from __future__ import annotations

import io
from typing import BinaryIO

from cloister.functions import FunctionError


class MemoryRuntime:
    """Inputs from bytes; outputs land in ``outputs`` when closed."""

    def __init__(self, inputs: dict[str, bytes] | None = None, outputs: tuple[str, ...] = ()) -> None:
        self.inputs = inputs or {}
        self.allowed_outputs = outputs
        self.outputs: dict[str, bytes] = {}

    def open_input(self, name: str) -> BinaryIO:
        if name not in self.inputs:
            raise FunctionError("Invalid input file identifier.")
        return io.BytesIO(self.inputs[name])

    def create_output(self, name: str) -> BinaryIO:
        if name not in self.allowed_outputs:
            raise FunctionError("Invalid output file identifier")
        outputs = self.outputs

        class Output(io.BytesIO):
            def close(self) -> None:
                if not self.closed:
                    outputs[name] = self.getvalue()
                super().close()

        return Output()
