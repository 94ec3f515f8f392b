"""Every built-in through the platform, with its fixture files encrypted as Teaclave's examples do."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import admin
from http_fixture_server import FixtureHTTPServer
from shared_fixtures import FIXTURE_CMACS, GBDT_TRAIN_ARGUMENTS, TEACLAVE_FIXTURES

from cloister.crypto.files import decrypt_file, encrypt_file
from cloister.model.files import FileCrypto
from cloister.sdk import DataMap, FunctionArgument, FunctionInput, FunctionOutput, OwnerList
from cloister.testing import RunningPlatform

F = TEACLAVE_FIXTURES / "functions"
ZERO = bytes(16)


@dataclass
class Scenario:
    name: str
    arguments: dict
    summary: str | Callable[[str], bool]
    inputs: dict[str, tuple[Path, str | None]] = field(default_factory=dict)
    """data name → (file, cmac hex of an existing teaclave-file-128 .enc, or None to encrypt it here)"""
    outputs: dict[str, Callable[[bytes], bool]] = field(default_factory=dict)


def _same_text(path: Path) -> Callable[[bytes], bool]:
    return lambda produced: produced.decode().strip() == path.read_text().strip()


def _close_numbers(path: Path) -> Callable[[bytes], bool]:
    def check(produced: bytes) -> bool:
        expected = np.array([[float(v) for v in line.split(",")] for line in path.read_text().split()])
        got = np.array([[float(v) for v in line.split(",")] for line in produced.decode().split()])
        return expected.shape == got.shape and np.allclose(got, expected, rtol=1e-9, atol=1e-12)

    return check


def _close_model(path: Path) -> Callable[[bytes], bool]:
    def check(produced: bytes) -> bool:
        expected, got = json.loads(path.read_text())["parameters"], json.loads(produced)["parameters"]
        return np.allclose(got, expected, rtol=1e-9, atol=0)

    return check


def _face_count(summary: str) -> bool:
    faces = json.loads(summary)
    return len(faces) == 29 and all(set(face["bbox"]) == {"x", "y", "width", "height"} for face in faces)


SCENARIOS = [
    Scenario(
        "builtin-gbdt-train",
        GBDT_TRAIN_ARGUMENTS,
        "Trained 120 lines of data.",
        {"training_data": (F / "gbdt_training" / "train.enc", FIXTURE_CMACS["gbdt_training/train.enc"])},
        {"trained_model": lambda produced: "trees" in json.loads(produced)},
    ),
    Scenario(
        "builtin-gbdt-predict",
        {},
        "Predict result has 30 lines of data.",
        {
            "model_file": (F / "gbdt_prediction" / "model.txt", None),
            "data_file": (F / "gbdt_prediction" / "test_data.txt", None),
        },
        {"result_file": _same_text(F / "gbdt_prediction" / "expected_result.txt")},
    ),
    Scenario(
        "builtin-logistic-regression-train",
        {"alg_alpha": 0.3, "alg_iters": 100, "feature_size": 30},
        "Trained 100 lines of data.",
        {"training_data": (F / "logistic_regression_training" / "train.txt", None)},
        {"model_file": _close_model(F / "logistic_regression_training" / "expected_model.txt")},
    ),
    Scenario(
        "builtin-logistic-regression-predict",
        {},
        "Predicted 5 lines of data.",
        {
            "model_file": (F / "logistic_regression_prediction" / "model.txt", None),
            "data_file": (F / "logistic_regression_prediction" / "predict_input.txt", None),
        },
        {"result_file": _same_text(F / "logistic_regression_prediction" / "expected_result.txt")},
    ),
    Scenario(
        "builtin_online_decrypt",
        {
            "key": "aqUdgZ0lJnuz9yiPkoDxM6ZcTcVVpd4KKLqzbHD88Lg=",
            "nonce": "AAECAwQFBgcICQoL",
            "encrypted_data": "CaZd8qSMMlBp8SjSXj2I4dQIuC9KkZ5DI/ATo1sWJw==",
            "algorithm": "aes256gcm",
        },
        "Hello Teaclave!",
    ),
    Scenario(
        "builtin-ordered-set-join",
        {"left_column": 0, "right_column": 0, "ascending": True, "drop": True},
        "120 records",
        {
            "input_data1": (F / "ordered_set_join" / "join0.csv.enc", FIXTURE_CMACS["ordered_set_join/join0.csv.enc"]),
            "input_data2": (F / "ordered_set_join" / "join1.csv.enc", FIXTURE_CMACS["ordered_set_join/join1.csv.enc"]),
        },
        {"output_result": _same_text(F / "gbdt_training" / "train.txt")},
    ),
    Scenario(
        "builtin-rsa-sign",
        {"data": "test data"},
        (F / "rsa_sign" / "expected_rsasign.txt").read_text().replace("\n", ""),
        {"rsa_key": (F / "rsa_sign" / "rsakey.enc", FIXTURE_CMACS["rsa_sign/rsakey.enc"])},
    ),
    Scenario(
        "builtin-face-detection",
        {
            "image": list((F / "face_detection" / "input.jpg").read_bytes()),
            "min_face_size": 20,
            "score_thresh": 2.0,
            "pyramid_scale_factor": 0.8,
            "slide_window_step_x": 4,
            "slide_window_step_y": 4,
        },
        _face_count,
    ),
    Scenario(
        "builtin_principal_components_analysis",
        {"n": 2, "center": True, "feature_size": 4},
        "transform 90 rows * 2 cols lines of data.",
        {"input_data": (F / "princopal_components_analysis" / "input.txt", None)},
        {"output_data": _close_numbers(F / "princopal_components_analysis" / "expected_result.txt")},
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_builtin_through_the_platform(platform: RunningPlatform, scenario: Scenario, tmp_path: Path) -> None:
    root = admin(platform)
    me = [platform.admin_user]
    served = tmp_path / "served"
    served.mkdir()
    with FixtureHTTPServer(served) as server:
        function_id = root.frontend.register_function(
            scenario.name,
            "fixture scenario",
            "builtin",
            arguments=[FunctionArgument(key) for key in scenario.arguments],
            inputs=[FunctionInput(name) for name in scenario.inputs],
            outputs=[FunctionOutput(name) for name in scenario.outputs],
        )
        task_id = root.frontend.create_task(
            function_id,
            scenario.arguments,
            "builtin",
            inputs_ownership=[OwnerList(name, me) for name in scenario.inputs],
            outputs_ownership=[OwnerList(name, me) for name in scenario.outputs],
        )
        inputs = []
        for name, (path, cmac) in scenario.inputs.items():
            if cmac is not None:  # Teaclave's own encrypted fixture: teaclave-file-128, all-zero key
                shutil.copy(path, served / path.name)
                data_id = root.frontend.register_input_file(
                    server.url(path.name), "teaclave-file-128", ZERO, b"", bytes.fromhex(cmac)
                )
            else:  # a plaintext fixture, encrypted here as its owner would
                crypto = FileCrypto("aes-gcm-128", os.urandom(16), os.urandom(12))
                tag = encrypt_file(crypto, path, served / f"{name}.enc")
                data_id = root.frontend.register_input_file(
                    server.url(f"{name}.enc"), crypto.schema, crypto.key, crypto.iv, tag
                )
            inputs.append(DataMap(name, data_id))
        keys = {name: FileCrypto("aes-gcm-128", os.urandom(16), os.urandom(12)) for name in scenario.outputs}
        outputs = [
            DataMap(name, root.frontend.register_output_file(server.url(f"out/{name}"), c.schema, c.key, c.iv))
            for name, c in keys.items()
        ]
        if inputs or outputs:
            root.frontend.assign_data_to_task(task_id, inputs, outputs)
        root.frontend.invoke_task(task_id)
        summary = root.frontend.get_task_result(task_id).decode()
    if callable(scenario.summary):
        assert scenario.summary(summary), summary[:300]
    else:
        assert summary == scenario.summary
    for name, check in scenario.outputs.items():
        plain = tmp_path / f"{name}.plain"
        decrypt_file(keys[name], served / "out" / name, plain)
        assert check(plain.read_bytes()), name


def test_every_builtin_has_a_scenario() -> None:
    from cloister.functions import builtin_functions

    covered = {s.name for s in SCENARIOS} | {
        "builtin-echo",  # test_echo.py
        "builtin-password-check",  # test_data_plane.py
        "builtin-ordered-set-intersect",  # test_data_plane.py
        "builtin-private-join-and-compute",  # test_data_plane.py
    }
    assert covered == set(builtin_functions())
    assert base64  # imported for scenario authors who add base64 arguments
