"""``builtin_principal_components_analysis`` (reference §12.11): project rows onto their first principal components.

Follows rusty-machine 0.5.4's ``PCA``: optionally centre the columns, take the right-singular vectors
of the data, and project the same data onto the first ``n`` of them. The name has underscores, as in
Teaclave.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._arguments import boolean, unsigned
from cloister.functions._float_text import debug_f64, read_float_rows

NAME = "builtin_principal_components_analysis"


def project(data: np.ndarray, components: int, center: bool) -> np.ndarray:
    """``data`` (centred if asked) times the first ``components`` right-singular vectors.

    Raises:
        FunctionError: more components than columns (rusty-machine's reason text).
    """
    rows, columns = data.shape
    if components > columns:
        raise FunctionError("Input data must have equal or larger number of columns than n")
    if center and rows:
        data = data - data.mean(axis=0)
    if components == 0 or rows == 0:
        return np.zeros((rows, components))
    # With fewer rows than columns the thin SVD has only `rows` vectors; the full one has them all.
    _, _, vt = np.linalg.svd(data, full_matrices=rows < columns)
    return data @ vt[:components].T


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    components = unsigned(arguments, "n")
    center = boolean(arguments, "center")
    features = unsigned(arguments, "feature_size")
    with runtime.open_input("input_data") as stream:
        table = read_float_rows(stream, features + 1)
    result = project(table[:, :features], components, center)
    with runtime.create_output("output_data") as stream:
        for row in result.tolist():
            stream.write((",".join(debug_f64(v) for v in row) + "\n").encode())
    return f"transform {result.shape[0]} rows * {result.shape[1]} cols lines of data."
