"""Principal components analysis on Teaclave's fixture, against numpy by hand, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from memory_runtime import MemoryRuntime
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.functions import FunctionError, builtin_functions

FIXTURE = TEACLAVE_FIXTURES / "functions" / "princopal_components_analysis"
NAME = "builtin_principal_components_analysis"


def pca(arguments: dict, data: bytes) -> tuple[str, bytes]:
    runtime = MemoryRuntime({"input_data": data}, ("output_data",))
    summary = builtin_functions()[NAME].run(arguments, runtime)
    return summary, runtime.outputs["output_data"]


def parse(output: bytes) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in output.decode().splitlines()])


def test_name_has_underscores() -> None:
    assert NAME in builtin_functions()
    assert "builtin-principal-components-analysis" not in builtin_functions()


def test_fixture_matches_numerically() -> None:
    summary, output = pca({"n": 2, "feature_size": 4, "center": True}, (FIXTURE / "input.txt").read_bytes())
    assert summary == "transform 90 rows * 2 cols lines of data."
    expected = (FIXTURE / "expected_result.txt").read_bytes()
    assert output.count(b"\n") == expected.count(b"\n") == 90 and output.endswith(b"\n")
    # rulinalg's SVD differs from LAPACK in the last ulps (reference §12.11); signs agree on this fixture.
    np.testing.assert_allclose(parse(output), parse(expected), rtol=1e-9, atol=1e-12)


def test_projection_by_hand_without_centering() -> None:
    data = np.array([[3.0, 0.0], [0.0, 1.0], [-3.0, 0.0]])
    text = b"".join(b"%r,%r,7\n" % tuple(row) for row in data.tolist())
    summary, output = pca({"n": 1, "feature_size": 2, "center": False}, text)
    assert summary == "transform 3 rows * 1 cols lines of data."
    # The first right-singular vector is ±(1, 0): the projection is ±x.
    assert output in (b"3.0\n0.0\n-3.0\n", b"-3.0\n0.0\n3.0\n", b"-3.0\n-0.0\n3.0\n")


def test_values_are_written_like_rust_debug() -> None:
    _, output = pca({"n": 1, "feature_size": 1, "center": False}, b"2,0\n1e-5,0\n1e17,0\n0,0\n")
    rows = output.decode().splitlines()
    assert rows in (["2.0", "1e-5", "1e17", "0.0"], ["-2.0", "-1e-5", "-1e17", "-0.0"])


def test_zero_components_and_zero_rows() -> None:
    assert pca({"n": 0, "feature_size": 2, "center": True}, b"1,2,0\n3,4,1\n") == (
        "transform 2 rows * 0 cols lines of data.",
        b"\n\n",
    )
    assert pca({"n": 2, "feature_size": 2, "center": True}, b"") == ("transform 0 rows * 2 cols lines of data.", b"")


def test_fewer_rows_than_columns_still_projects() -> None:
    _, output = pca({"n": 3, "feature_size": 3, "center": True}, b"1,2,3,0\n2,4,7,1\n")
    projected = parse(output)
    assert projected.shape == (2, 3)
    centered = np.array([[-0.5, -1.0, -2.0], [0.5, 1.0, 2.0]])
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), np.linalg.norm(centered, axis=1), rtol=1e-12)


@pytest.mark.parametrize(
    ("arguments", "data", "reason"),
    [
        ({"n": 2, "feature_size": 4}, b"", "Cannot deserialize arguments"),
        ({"n": 2, "feature_size": 4, "center": 1}, b"", "Cannot deserialize arguments"),
        ({"n": -1, "feature_size": 4, "center": True}, b"", "Cannot deserialize arguments"),
        (
            {"n": 3, "feature_size": 2, "center": True},
            b"1,2,0\n",
            "Input data must have equal or larger number of columns than n",
        ),
        ({"n": 1, "feature_size": 2, "center": True}, b"1,2\n", "Data format error: column len = 2, expected = 3"),
        ({"n": 1, "feature_size": 2, "center": True}, b"1,2,0\n\n", "Empty line"),
        ({"n": 1, "feature_size": 2, "center": True}, b"1,a,0\n", "invalid float literal"),
    ],
)
def test_errors(arguments: dict, data: bytes, reason: str) -> None:
    runtime = MemoryRuntime({"input_data": data}, ("output_data",))
    with pytest.raises(FunctionError, match=f"^{reason}$"):
        builtin_functions()[NAME].run(arguments, runtime)
    assert runtime.outputs == {}
