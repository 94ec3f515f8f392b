"""``builtin-logistic-regression-predict`` (reference §12.5): apply a trained logistic regression model.

The model is the JSON ``builtin-logistic-regression-train`` writes; each data row holds exactly one
value per non-bias weight, and gets ``sigmoid(w0 + Σ wi·xi)`` with four decimals, as Rust's ``{:.4}``.
"""

from __future__ import annotations

import json
import math
from typing import Any, BinaryIO

import numpy as np

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._float_text import read_float_rows
from cloister.functions._text import INVALID_UTF8

NAME = "builtin-logistic-regression-predict"
_NOT_NUMBERS = "Invalid model file: `parameters` must be a non-empty list of numbers"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def read_weights(stream: BinaryIO) -> np.ndarray:
    """The ``parameters`` of a model file, bias first.

    Raises:
        FunctionError: the file is not UTF-8, not the model JSON, or has no parameters.
    """
    try:
        text = stream.read().decode("utf-8")
    except UnicodeDecodeError:
        raise FunctionError(INVALID_UTF8) from None
    try:
        model = json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:  # the message holds a position, never the file's text
        raise FunctionError(f"Invalid model file: {error}") from None
    if not isinstance(model, dict) or "parameters" not in model:
        raise FunctionError("Invalid model file: missing field `parameters`")
    parameters = model["parameters"]
    if parameters is None:
        raise FunctionError("Model parameter is None")
    if (
        not isinstance(parameters, list)
        or not parameters
        or any(isinstance(p, bool) or not isinstance(p, int | float) for p in parameters)
    ):
        raise FunctionError(_NOT_NUMBERS)
    try:
        return np.array([float(p) for p in parameters], dtype=np.float64)
    except OverflowError:
        raise FunctionError(_NOT_NUMBERS) from None


def predict(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    """sigmoid(X'w), the bias column first; sigmoid is rusty-machine's ``1 / (1 + e^-x)``."""
    design = np.empty((features.shape[0], features.shape[1] + 1))
    design[:, 0] = 1.0
    design[:, 1:] = features
    with np.errstate(all="ignore"):
        return 1.0 / (1.0 + np.exp(-(design @ weights)))


def _four_decimals(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.4f}"


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    with runtime.open_input("model_file") as stream:
        weights = read_weights(stream)
    with runtime.open_input("data_file") as stream:
        features = read_float_rows(stream, weights.size - 1)
    results = predict(weights, features)
    with runtime.create_output("result_file") as stream:
        stream.write("".join(f"{_four_decimals(p)}\n" for p in results.tolist()).encode())
    return f"Predicted {results.size} lines of data."
