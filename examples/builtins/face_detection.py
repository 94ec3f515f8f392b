"""`builtin-face-detection`: find the faces in Teaclave's test photo, against a running Cloister.

Usage: .venv/bin/python examples/builtins/face_detection.py [--state-dir DIR]

The image travels as the task's argument (a JSON array of its bytes), as in Teaclave.
"""

import json

from _harness import _session, options

from cloister.sdk import FunctionArgument

if __name__ == "__main__":
    args = options("builtin-face-detection")
    image = args.data / "face_detection" / "input.jpg"
    frontend = _session(args.state_dir, args.admin_user, args.admin_password)
    arguments = {"image": list(image.read_bytes()), "min_face_size": 20, "score_thresh": 2.0,
                 "pyramid_scale_factor": 0.8, "slide_window_step_x": 4, "slide_window_step_y": 4}  # fmt: skip
    function_id = frontend.register_function(
        "builtin-face-detection", "faces in a photo", "builtin", arguments=[FunctionArgument(k) for k in arguments]
    )
    task_id = frontend.create_task(function_id, arguments, "builtin")
    frontend.invoke_task(task_id)
    faces = json.loads(frontend.get_task_result(task_id))
    print(f"builtin-face-detection: {len(faces)} faces, first at {faces[0]['bbox'] if faces else None}")
