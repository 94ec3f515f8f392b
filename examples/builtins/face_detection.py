"""`builtin-face-detection`: find the faces in Teaclave's fixture photo (`python examples/builtins/face_detection.py`).

The image travels as the task's argument (a JSON array of its bytes), as in Teaclave.
"""

import json
import os
import sys
from pathlib import Path

from _harness import REPOSITORY, _session

from cloister.config import default_state_dir
from cloister.sdk import FunctionArgument

if __name__ == "__main__":
    state = Path(sys.argv[1]) if len(sys.argv) > 1 else default_state_dir(os.environ)
    image = REPOSITORY.parent / "shared" / "fixtures" / "teaclave" / "functions" / "face_detection" / "input.jpg"
    password = os.environ.get("CLOISTER_ADMIN_PASSWORD") or (state / "admin-password").read_text().strip()
    frontend = _session(state, "admin", password)
    arguments = {"image": list(image.read_bytes()), "min_face_size": 20, "score_thresh": 2.0,
                 "pyramid_scale_factor": 0.8, "slide_window_step_x": 4, "slide_window_step_y": 4}  # fmt: skip
    function_id = frontend.register_function(
        "builtin-face-detection", "faces in a photo", "builtin", arguments=[FunctionArgument(k) for k in arguments]
    )
    task_id = frontend.create_task(function_id, arguments, "builtin")
    frontend.invoke_task(task_id)
    faces = json.loads(frontend.get_task_result(task_id))
    print(f"builtin-face-detection: {len(faces)} faces, first at {faces[0]['bbox'] if faces else None}")
