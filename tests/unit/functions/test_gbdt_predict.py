"""builtin-gbdt-predict on Teaclave's fixture, the gbdt-rs model format, f32 text and the error texts."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from memory_runtime import MemoryRuntime
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.functions import FunctionError, builtin_functions
from cloister.functions._gbdt import dump_model, f32_text, load_model, prediction_text, to_f32

FIXTURE = TEACLAVE_FIXTURES / "functions" / "gbdt_prediction"
MODEL = (FIXTURE / "model.txt").read_bytes()
DATA = (FIXTURE / "test_data.txt").read_bytes()


def predict(model: bytes, data: bytes) -> tuple[str, str]:
    runtime = MemoryRuntime({"model_file": model, "data_file": data}, ("result_file",))
    summary = builtin_functions()["builtin-gbdt-predict"].run({}, runtime)
    return summary, runtime.outputs["result_file"].decode()


def edited(change: Callable[[dict], object]) -> bytes:
    model = json.loads(MODEL)
    change(model)
    return json.dumps(model).encode()


def leaf(pred: float, index: int) -> dict:
    value = {"feature_index": 0, "feature_value": 0.0, "pred": pred, "missing": 0, "is_leaf": True}
    return {"value": value, "index": index, "left": 0, "right": 0}


def stump(missing: int) -> dict:
    """x0 < 0.5 ? 1 : 2, the node's own pred 7 used when x0 is unknown and ``missing`` is 0."""
    root = {"feature_index": 0, "feature_value": 0.5, "pred": 7.0, "missing": missing, "is_leaf": False}
    nodes = [{"value": root, "index": 0, "left": 1, "right": 2}, leaf(1.0, 1), leaf(2.0, 2)]
    parameters = {"feature_size": 1, "max_depth": 1, "min_leaf_size": 1, "loss": "SquaredError"}
    return {"tree": {"tree": nodes}, **parameters, "feature_sample_ratio": 1.0}


def cycle(model: dict) -> None:
    """The first tree's left child (a leaf) becomes a node whose children are itself."""
    child = model["trees"][0]["tree"]["tree"][1]
    child["value"]["is_leaf"] = False
    child.update(left=1, right=1)


def stump_model(missing: int = 0, loss: str = "SquaredError", bias: float = 0.0) -> bytes:
    model = json.loads(MODEL)
    model["conf"].update(iterations=1, shrinkage=1.0, loss=loss)
    model["trees"], model["bias"] = [stump(missing)], bias
    return json.dumps(model).encode()


def test_fixture_prediction_is_text_identical() -> None:
    summary, result = predict(MODEL, DATA)
    assert summary == "Predict result has 30 lines of data."
    assert result == (FIXTURE / "expected_result.txt").read_text()


def test_fixture_model_round_trips_byte_for_byte() -> None:
    assert dump_model(load_model(MODEL.decode())).encode() == MODEL


def test_fields_and_lines_are_trimmed() -> None:
    spaced = b"\n".join(b" " + line.replace(b",", b" ,\t") + b"\r" for line in DATA.splitlines())
    assert predict(MODEL, spaced) == predict(MODEL, DATA)


def test_log_likelyhood_and_logistic_links() -> None:
    raw = [float(v) for v in predict(stump_model(), b"0\n1\n")[1].split()]
    assert raw == [1.0, 2.0]
    log = [float(v) for v in predict(stump_model(loss="LogLikelyhood"), b"0\n1\n")[1].split()]
    assert log == pytest.approx([1 / (1 + math.exp(-2 * v)) for v in raw], rel=1e-7)  # computed in f32
    logistic = [float(v) for v in predict(stump_model(loss="BinaryLogistic"), b"0\n1\n")[1].split()]
    assert logistic == pytest.approx([1 / (1 + math.exp(-v)) for v in raw], rel=1e-7)


@pytest.mark.parametrize(("missing", "expected"), [(-1, "1.0000000000"), (0, "7.0000000000"), (1, "2.0000000000")])
def test_unknown_feature_follows_missing(missing: int, expected: str) -> None:
    # gbdt-rs marks an unknown feature with f32::MIN.
    assert predict(stump_model(missing), b"-3.4028235e38\n")[1] == expected + "\n"


def test_model_without_trees_predicts_f32_min() -> None:
    model = edited(lambda m: (m["conf"].update(iterations=0), m.update(trees=[])))
    assert predict(model, b"1,2,3,4\n")[1] == "-340282346638528859811704183484516925440.0000000000\n"


def test_empty_data_gives_empty_result() -> None:
    assert predict(MODEL, b"") == ("Predict result has 0 lines of data.", "")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"1,2,3,4\n\n", "Empty line"),
        (b"1,2,,4\n", "Empty feature"),
        (b"1,2, ,4\n", "Empty feature"),
        (b"1,2,x,\n", "invalid float literal"),
        (b"1,2,1_0,4\n", "invalid float literal"),
        (b"1,2,\xff,4\n", "stream did not contain valid UTF-8"),
        (b"1,2\n", "sample doesn't have the feature"),
    ],
)
def test_data_errors(data: bytes, reason: str) -> None:
    with pytest.raises(FunctionError, match=f"^{reason}$"):
        predict(MODEL, data)


@pytest.mark.parametrize(
    ("model", "detail"),
    [
        (b"{", "Invalid model: "),
        (b"\xff", "stream did not contain valid UTF-8"),
        (edited(lambda m: m.pop("bias")), "Invalid model: missing field `bias`"),
        (edited(lambda m: m.update(bias="2")), "Invalid model: invalid value for `bias`"),
        (edited(lambda m: m["conf"].update(loss="Huber")), "Invalid model: unknown variant for `loss`"),
        (edited(lambda m: m["conf"].update(max_depth=-1)), "Invalid model: invalid value for `max_depth`"),
        (MODEL.replace(b'"bias":2.0', b'"bias":NaN'), "Invalid model: invalid number NaN"),
        (MODEL.replace(b'"bias":2.0', b'"bias":2.0,"bias":2.0'), "Invalid model: duplicate field"),
        (edited(lambda m: m["conf"].update(iterations=99)), "Invalid model: iterations differ"),
        (edited(lambda m: m["trees"][0]["tree"].update(tree=[])), "Invalid model: decision tree has no root"),
        (edited(lambda m: m["trees"][0]["tree"]["tree"][1]["value"].update(is_leaf=False)), "Invalid model: child"),
        (edited(lambda m: m["trees"][0]["tree"]["tree"][0].update(left=0)), "Invalid model: child node not found"),
        (edited(cycle), "Invalid model: decision tree has a cycle"),
    ],
)
def test_model_errors(model: bytes, detail: str) -> None:
    with pytest.raises(FunctionError, match=f"^{detail}"):
        predict(model, DATA)


def test_extra_model_fields_are_ignored() -> None:
    assert predict(edited(lambda m: m.update(comment="x")), DATA) == predict(MODEL, DATA)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.6500001, "1.6500001"),
        (0.1, "0.1"),
        (2.0, "2.0"),
        (-0.0, "-0.0"),
        (1e-6, "0.000001"),  # ryu's f32 layout is positional one decade further down than its f64 layout
        (1e-7, "1e-7"),
        (1e12, "1000000000000.0"),
        (1e13, "1e13"),
        (12345678901234.0, "1.2345679e13"),
        (-3.4028235e38, "-3.4028235e38"),
        (float("nan"), "null"),
    ],
)
def test_f32_json_text(value: float, text: str) -> None:
    assert f32_text(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (np.float32(1.0000264645), "1.0000264645"),
        (np.float32(2.0**-11), "0.0004882812"),  # an exact tie, rounded to even like Rust's `{:.10}`
        (np.float32("nan"), "NaN"),
        (np.float32("-inf"), "-inf"),
    ],
)
def test_prediction_text(value: np.float32, text: str) -> None:
    assert prediction_text(value) == text


def test_f32_parsing_is_correctly_rounded() -> None:
    # The first text's f64 is exactly between two f32 values, the text itself slightly above that midpoint:
    # rounding through f64 alone would give 1.0; Rust's parser (and ours) gives the next f32.
    values = to_f32(["1.000000059604644775390625001", "1.000000059604644775390625", "0.1", "7e-46", "1e39"])
    above_one = float(np.nextafter(np.float32(1), np.float32(2)))
    assert values.tolist() == [above_one, 1.0, float(np.float32(0.1)), 0.0, math.inf]
