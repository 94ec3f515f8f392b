"""``builtin-face-detection``: the 29 people of Teaclave's fixture photo, the output shape, argument checks."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
from memory_runtime import MemoryRuntime
from shared_fixtures import TEACLAVE_FIXTURES

from cloister.functions import FunctionError, builtin_functions

PHOTO = TEACLAVE_FIXTURES / "functions" / "face_detection" / "input.jpg"
FIXTURE_ARGUMENTS = {
    "min_face_size": 20,
    "score_thresh": 2.0,
    "pyramid_scale_factor": 0.8,
    "slide_window_step_x": 4,
    "slide_window_step_y": 4,
}
# Centre and rough size of each face in input.jpg (the 1927 Solvay conference), checked by eye:
# back row (11, De Donder included, whom Teaclave's output.jpg misses), middle row (9), front row (9).
PEOPLE = [
    (270, 67, 59), (398, 108, 58), (491, 154, 57), (641, 126, 64), (792, 148, 59), (928, 118, 57),
    (1039, 129, 62), (1158, 117, 54), (1299, 120, 54), (1397, 64, 58), (1461, 122, 59),
    (78, 220, 61), (238, 241, 65), (409, 226, 66), (595, 227, 68), (792, 217, 61), (947, 215, 61),
    (1110, 230, 63), (1292, 238, 70), (1448, 243, 65),
    (136, 277, 63), (314, 289, 70), (496, 282, 66), (691, 291, 77), (896, 280, 70), (1068, 279, 64),
    (1195, 277, 71), (1383, 286, 69), (1512, 306, 65),
]  # fmt: skip


def detect(arguments: dict) -> list[dict]:
    return json.loads(builtin_functions()["builtin-face-detection"].run(arguments, MemoryRuntime()))


def failure(arguments: dict) -> str:
    with pytest.raises(FunctionError) as caught:
        builtin_functions()["builtin-face-detection"].run(arguments, MemoryRuntime())
    return caught.value.reason


@pytest.fixture(scope="module")
def photo() -> list[int]:
    return list(PHOTO.read_bytes())


@pytest.fixture(scope="module")
def blank() -> list[int]:
    """A small PNG without faces: argument checks run after decoding, as in Teaclave."""
    ok, encoded = cv2.imencode(".png", np.full((48, 64), 128, np.uint8))
    assert ok
    return encoded.ravel().tolist()


def person(face: dict) -> int | None:
    box = face["bbox"]
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for number, (px, py, size) in enumerate(PEOPLE):
        if abs(x - px) < 0.4 * size and abs(y - py) < 0.4 * size and 0.5 < box["width"] / size < 2:
            return number
    return None


def test_teaclave_fixture_finds_the_29_people(photo: list[int]) -> None:
    faces = detect({"image": photo, **FIXTURE_ARGUMENTS})
    assert len(faces) == 29
    assert sorted(person(face) for face in faces) == list(range(29))  # one box per person, none elsewhere
    assert [face["score"] for face in faces] == sorted((face["score"] for face in faces), reverse=True)
    assert min(face["score"] for face in faces) >= 2.0


def test_output_shape(photo: list[int]) -> None:
    text = builtin_functions()["builtin-face-detection"].run({"image": photo, **FIXTURE_ARGUMENTS}, MemoryRuntime())
    assert text.startswith('[{"bbox":{"x":')
    assert ", " not in text and ": " not in text
    face = json.loads(text)[0]
    assert list(face) == ["bbox", "roll", "pitch", "yaw", "score"]
    assert list(face["bbox"]) == ["x", "y", "width", "height"]
    assert all(type(face["bbox"][key]) is int for key in face["bbox"])
    assert (face["roll"], face["pitch"], face["yaw"]) == (0.0, 0.0, 0.0)
    assert '"roll":0.0' in text and type(face["score"]) is float


def test_threshold_and_size_limits(photo: list[int]) -> None:
    strict = detect({"image": photo, **FIXTURE_ARGUMENTS, "score_thresh": 10.0})
    assert 0 < len(strict) < 29 and all(face["score"] >= 10.0 for face in strict)
    assert all(person(face) is not None for face in strict)
    small = detect({"image": photo, **FIXTURE_ARGUMENTS, "max_face_size": 60})
    assert small and all(face["bbox"]["width"] <= 60 for face in small)
    assert detect({"image": photo, **FIXTURE_ARGUMENTS, "min_face_size": 200}) == []


def test_no_faces(blank: list[int]) -> None:
    assert detect({"image": blank}) == []
    builtin = builtin_functions()["builtin-face-detection"]
    assert builtin.run({"image": blank, "max_face_size": 0, "window_size": 40}, MemoryRuntime()) == "[]"


@pytest.mark.parametrize(
    "image",
    [None, "aGVsbG8=", [0, 256], [-1], [1.0], [True, 0], {"0": 1}, [[1]]],
)
def test_image_must_be_an_array_of_bytes(image: object) -> None:
    arguments = {} if image is None else {"image": image}
    assert failure(arguments) == "Cannot deserialize arguments"


@pytest.mark.parametrize("image", [[], list(b"not an image at all"), list(b"\x89PNG\r\n\x1a\n")])
def test_undecodable_images(image: list[int]) -> None:
    assert failure({"image": image}) == "The image format could not be determined"


@pytest.mark.parametrize(
    "arguments",
    [
        {"window_size": 40.0},
        {"window_size": -1},
        {"min_face_size": "20"},
        {"max_face_size": 2**32},
        {"slide_window_step_x": True},
        {"pyramid_scale_factor": "0.8"},
        {"score_thresh": [2.0]},
    ],
)
def test_ill_typed_arguments(blank: list[int], arguments: dict) -> None:
    assert failure({"image": blank, **arguments}) == "Cannot deserialize arguments"


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"window_size": 19}, "Illegal window size: 19 (window_size must be at least 20)"),
        ({"slide_window_step_x": 0, "slide_window_step_y": 4}, "Illegal horizontal step: 0"),
        ({"slide_window_step_x": 4, "slide_window_step_y": 0}, "Illegal vertical step: 0"),
        ({"min_face_size": 19}, "Illegal min face size: 19 (min_face_size must be at least 20)"),
        (
            {"pyramid_scale_factor": 0.995},
            "Illegal scale factor: 0.995 (pyramid_scale_factor must be within [0.01, 0.99])",
        ),
        ({"pyramid_scale_factor": 0.005}, "Illegal scale factor: 0.005"),
        ({"pyramid_scale_factor": 1e300}, "Illegal scale factor: inf"),
        ({"score_thresh": 0}, "Illegal threshold: 0.0 (score_thresh must be positive)"),
        ({"score_thresh": -2.5}, "Illegal threshold: -2.5"),
    ],
)
def test_out_of_range_arguments(blank: list[int], arguments: dict, reason: str) -> None:
    assert failure({"image": blank, **arguments}).startswith(reason)


def test_boundaries_accepted(blank: list[int]) -> None:
    # Rust compares in f32, so 0.01 and 0.99 themselves are allowed; a lone step is ignored, as in Teaclave.
    for arguments in (
        {"pyramid_scale_factor": 0.99, "window_size": 20, "min_face_size": 20},
        {"pyramid_scale_factor": 0.01, "score_thresh": 1e-9},
        {"slide_window_step_x": 0},
        {"score_thresh": 1e300},
    ):
        assert detect({"image": blank, **arguments}) == []


def test_without_opencv_the_task_says_which_extra_to_install(photo: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # what an install without the vision extra has
    assert failure({"image": photo}) == (
        "builtin-face-detection needs the 'vision' extra (OpenCV): pip install 'cloister[vision]'"
    )
