"""``builtin-logistic-regression-train`` (reference §12.4): logistic regression by batch gradient descent.

Reproduces rusty-machine 0.5.4's ``LogisticRegressor`` with ``GradientDesc`` in float64: a bias column
first, every weight starting at 0.5, and ``w ← w - alpha · X'ᵀ(sigmoid(X'w) - y) / n`` per iteration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cloister.functions import FileRuntime
from cloister.functions._arguments import number, unsigned
from cloister.functions._float_text import read_float_rows, serde_json_f64

NAME = "builtin-logistic-regression-train"


def train(table: np.ndarray, alpha: float, iterations: int) -> np.ndarray:
    """Weights ``[w0, w1, …]`` for rows of features with the label last.

    No rows give NaN weights after the first iteration (0/0), as in the reference; serde_json
    writes them as ``null``.
    """
    rows = table.shape[0]
    design = np.empty_like(table)
    design[:, 0] = 1.0
    design[:, 1:] = table[:, :-1]
    labels = table[:, -1].copy()
    weights = np.full(table.shape[1], 0.5)
    with np.errstate(all="ignore"):
        for _ in range(iterations):
            outputs = 1.0 / (1.0 + np.exp(-(design @ weights)))
            gradient = (design.T @ (outputs - labels)) / rows
            weights = weights - gradient * alpha
    return weights


def model_json(alpha: float, iterations: int, weights: np.ndarray) -> str:
    """The model file as Teaclave's serde_json writes it (no spaces, ryu float text)."""
    parameters = ",".join(serde_json_f64(w) for w in weights.tolist())
    return f'{{"alpha":{serde_json_f64(alpha)},"iters":{iterations},"parameters":[{parameters}]}}'


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    alpha = number(arguments, "alg_alpha")
    iterations = unsigned(arguments, "alg_iters")
    features = unsigned(arguments, "feature_size")
    with runtime.open_input("training_data") as stream:
        table = read_float_rows(stream, features + 1)
    weights = train(table, alpha, iterations)
    with runtime.create_output("model_file") as stream:
        stream.write(model_json(alpha, iterations, weights).encode())
    return f"Trained {table.shape[0]} lines of data."
