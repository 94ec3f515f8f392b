"""Logistic regression train and predict on Teaclave's fixtures, their edge cases, and a million rows."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from memory_runtime import MemoryRuntime
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.functions import FunctionError, builtin_functions

TRAINING = TEACLAVE_FIXTURES / "functions" / "logistic_regression_training"
PREDICTION = TEACLAVE_FIXTURES / "functions" / "logistic_regression_prediction"
TRAIN = "builtin-logistic-regression-train"
PREDICT = "builtin-logistic-regression-predict"
FIXTURE_ARGUMENTS = {"alg_alpha": 0.3, "alg_iters": 100, "feature_size": 30}


def train(arguments: dict, data: bytes) -> tuple[str, bytes]:
    runtime = MemoryRuntime({"training_data": data}, ("model_file",))
    summary = builtin_functions()[TRAIN].run(arguments, runtime)
    return summary, runtime.outputs["model_file"]


def predict(model: bytes, data: bytes) -> tuple[str, bytes]:
    runtime = MemoryRuntime({"model_file": model, "data_file": data}, ("result_file",))
    summary = builtin_functions()[PREDICT].run({}, runtime)
    return summary, runtime.outputs["result_file"]


def test_train_fixture_matches_numerically() -> None:
    summary, model = train(FIXTURE_ARGUMENTS, (TRAINING / "train.txt").read_bytes())
    assert summary == "Trained 100 lines of data."
    expected_text = (TRAINING / "expected_model.txt").read_text()
    ours, expected = json.loads(model), json.loads(expected_text)
    assert list(ours) == ["alpha", "iters", "parameters"]
    assert (ours["alpha"], ours["iters"]) == (0.3, 100)
    # Summation order differs from rulinalg in the last ulp (reference §12.4): compare numerically.
    np.testing.assert_allclose(ours["parameters"], expected["parameters"], rtol=1e-9, atol=0)
    assert model.decode().startswith('{"alpha":0.3,"iters":100,"parameters":[-0.72176732155726')


def test_train_writes_serde_json_numbers() -> None:
    summary, model = train({"alg_alpha": 1, "alg_iters": 0, "feature_size": 2}, b"1,2,1\n3,4,0")
    assert summary == "Trained 2 lines of data."
    assert model == b'{"alpha":1.0,"iters":0,"parameters":[0.5,0.5,0.5]}'
    _, model = train({"alg_alpha": 1e-7, "alg_iters": 0, "feature_size": 0}, b"1\n")
    assert model == b'{"alpha":1e-7,"iters":0,"parameters":[0.5]}'


def test_train_one_step_by_hand() -> None:
    _, model = train({"alg_alpha": 0.5, "alg_iters": 1, "feature_size": 1}, b" 2,1 \r\n-2,0\n")
    # w = [0.5, 0.5]; sigmoid(1.5), sigmoid(-0.5); gradient = Xᵀ(sigmoid - y) / 2.
    s1, s2 = 1 / (1 + np.exp(-1.5)), 1 / (1 + np.exp(0.5))
    gradient = np.array([(s1 - 1) + s2, 2 * (s1 - 1) - 2 * s2]) / 2
    np.testing.assert_allclose(json.loads(model)["parameters"], 0.5 - 0.5 * gradient, rtol=1e-15)


def test_train_without_rows_gives_null_parameters() -> None:
    summary, model = train({"alg_alpha": 0.3, "alg_iters": 1, "feature_size": 1}, b"")
    assert summary == "Trained 0 lines of data."
    assert model == b'{"alpha":0.3,"iters":1,"parameters":[null,null]}'


@pytest.mark.parametrize(
    ("arguments", "data", "reason"),
    [
        ({"alg_iters": 1, "feature_size": 1}, b"1,1\n", "Cannot deserialize arguments"),
        ({"alg_alpha": "0.3", "alg_iters": 1, "feature_size": 1}, b"1,1\n", "Cannot deserialize arguments"),
        ({"alg_alpha": 0.3, "alg_iters": 1.5, "feature_size": 1}, b"1,1\n", "Cannot deserialize arguments"),
        ({"alg_alpha": 0.3, "alg_iters": 1, "feature_size": -1}, b"1,1\n", "Cannot deserialize arguments"),
        ({"alg_alpha": 0.3, "alg_iters": 1, "feature_size": 1}, b"1,1\n\n2,0\n", "Empty line"),
        ({"alg_alpha": 0.3, "alg_iters": 1, "feature_size": 1}, b"1,1\n  \n", "Empty line"),
        (
            {"alg_alpha": 0.3, "alg_iters": 1, "feature_size": 2},
            b"1,1\n",
            "Data format error: column len = 2, expected = 3",
        ),
        ({"alg_alpha": 0.3, "alg_iters": 1, "feature_size": 1}, b"1,x\n", "invalid float literal"),
        ({"alg_alpha": 0.3, "alg_iters": 1, "feature_size": 1}, b"1, 1\n", "invalid float literal"),
        ({"alg_alpha": 0.3, "alg_iters": 1, "feature_size": 1}, b"1,\n", "cannot parse float from empty string"),
        ({"alg_alpha": 0.3, "alg_iters": 1, "feature_size": 1}, b"1,\xff\n", "stream did not contain valid UTF-8"),
    ],
)
def test_train_errors(arguments: dict, data: bytes, reason: str) -> None:
    runtime = MemoryRuntime({"training_data": data}, ("model_file",))
    with pytest.raises(FunctionError, match=f"^{reason}$"):
        builtin_functions()[TRAIN].run(arguments, runtime)
    assert runtime.outputs == {}


def test_predict_fixture_matches_exactly() -> None:
    summary, result = predict((PREDICTION / "model.txt").read_bytes(), (PREDICTION / "predict_input.txt").read_bytes())
    assert summary == "Predicted 5 lines of data."
    assert result == (PREDICTION / "expected_result.txt").read_bytes()


def test_predict_reads_the_trained_model() -> None:
    _, model = train(FIXTURE_ARGUMENTS, (TRAINING / "train.txt").read_bytes())
    summary, result = predict(model, (PREDICTION / "predict_input.txt").read_bytes())
    assert (summary, result) == ("Predicted 5 lines of data.", (PREDICTION / "expected_result.txt").read_bytes())


def test_predict_small_cases() -> None:
    model = b'{"alpha":0.3,"iters":1,"parameters":[0.0,1.0]}'
    assert predict(model, b"0\n1e3\n-1e3\nnan") == ("Predicted 4 lines of data.", b"0.5000\n1.0000\n0.0000\nNaN\n")
    assert predict(model, b"") == ("Predicted 0 lines of data.", b"")


@pytest.mark.parametrize(
    ("model", "data", "reason"),
    [
        (b'{"parameters":[0.1,0.2,0.3]}', b"1,2,3\n", "Data format error: column len = 3, expected = 2"),
        (b'{"parameters":[0.1,0.2,0.3]}', b"1\n", "Data format error: column len = 1, expected = 2"),
        (b'{"parameters":[0.1]}', b"1\n", "Data format error: column len = 1, expected = 0"),
        (b'{"parameters":[0.1,0.2]}', b"1\n\n", "Empty line"),
        (b'{"alpha":0.3,"iters":1,"parameters":null}', b"1\n", "Model parameter is None"),
        (b'{"alpha":0.3}', b"1\n", "Invalid model file: missing field `parameters`"),
        (b'{"parameters":[]}', b"", "Invalid model file: `parameters` must be a non-empty list of numbers"),
        (b'{"parameters":["1"]}', b"", "Invalid model file: `parameters` must be a non-empty list of numbers"),
        (b'{"parameters":[NaN]}', b"", "Invalid model file: NaN is not valid JSON"),
        (b"not json", b"", "Invalid model file: Expecting value: line 1 column 1 \\(char 0\\)"),
        (b"\xff", b"", "stream did not contain valid UTF-8"),
    ],
)
def test_predict_errors(model: bytes, data: bytes, reason: str) -> None:
    runtime = MemoryRuntime({"model_file": model, "data_file": data}, ("result_file",))
    with pytest.raises(FunctionError, match=f"^{reason}$"):
        builtin_functions()[PREDICT].run({}, runtime)
    assert runtime.outputs == {}


def _generated_rows(rows: int, features: int) -> bytes:
    """``rows`` lines of random features and a 0/1 label, built from 1,000 distinct lines to be quick."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=(1000, features))
    labels = (values.sum(axis=1) > 0).astype(float)
    distinct = [",".join(map(repr, row)).encode() for row in np.column_stack([values, labels]).tolist()]
    picks = rng.integers(0, len(distinct), size=rows).tolist()
    return b"\n".join(distinct[i] for i in picks) + b"\n"


def test_train_and_predict_a_million_rows() -> None:
    data = _generated_rows(1_000_000, 10)
    started = time.perf_counter()
    summary, model = train({"alg_alpha": 0.3, "alg_iters": 10, "feature_size": 10}, data)
    trained = time.perf_counter()
    assert summary == "Trained 1000000 lines of data."
    parameters = json.loads(model)["parameters"]
    assert len(parameters) == 11 and all(np.isfinite(parameters))
    features = b"\n".join(line.rsplit(b",", 1)[0] for line in data[: len(data) // 100].split(b"\n")[:-1])
    summary, result = predict(model, features)
    print(f"train 1,000,000 x 10: {trained - started:.2f}s; predict {summary}: {time.perf_counter() - trained:.2f}s")
    assert result.count(b"\n") == int(summary.split()[1])
