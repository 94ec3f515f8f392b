"""``builtin-gbdt-predict`` (reference §12.3): a gbdt-rs model's predictions for lines of comma-separated features.

Reads the JSON model from ``model_file`` and the samples from ``data_file``, and writes one prediction per
sample to ``result_file`` as Rust's ``{:.10}`` prints the f32 result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._float_text import check_float, rust_trim
from cloister.functions._gbdt import (
    F32Values,
    load_model,
    plain_float_line,
    predict,
    prediction_text,
)
from cloister.functions._text import INVALID_UTF8, lines

NAME = "builtin-gbdt-predict"


def _read_text(runtime: FileRuntime, name: str) -> str:
    with runtime.open_input(name) as stream:
        raw = stream.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FunctionError(INVALID_UTF8) from None


def _fields(line: str) -> list[str]:
    """One sample's feature texts: the line and each field trimmed, none empty, each a float."""
    trimmed = rust_trim(line)
    if not trimmed:
        raise FunctionError("Empty line")
    if plain_float_line(trimmed):
        return trimmed.split(",")
    fields = []
    for raw in trimmed.split(","):
        field = rust_trim(raw)
        if not field:
            raise FunctionError("Empty feature")
        check_float(field)
        fields.append(field)
    return fields


def _read_samples(runtime: FileRuntime) -> tuple[np.ndarray, np.ndarray]:
    """An (n, widest) f32 matrix, rows padded with zeros, and each row's real width."""
    values = F32Values()
    widths: list[int] = []
    with runtime.open_input("data_file") as stream:
        for line in lines(stream):
            fields = _fields(line)
            values.extend(fields)
            widths.append(len(fields))
    flat = values.array()
    width = np.array(widths, dtype=np.int64)
    widest = int(width.max()) if widths else 0
    rows = np.zeros((len(widths), widest), dtype=np.float32)
    rows[np.arange(widest) < width[:, None]] = flat
    return rows, width


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    model = load_model(_read_text(runtime, "model_file"))
    rows, widths = _read_samples(runtime)
    predictions = predict(model, rows, widths)
    with runtime.create_output("result_file") as stream:
        stream.write("".join(prediction_text(value) + "\n" for value in predictions).encode())
    return f"Predict result has {len(predictions)} lines of data."
