"""`simple_add.wat`: a WebAssembly function adds its two arguments, against a running Cloister.

Usage: .venv/bin/python examples/wasm/simple_add.py [--state-dir DIR]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtins"))  # the examples' shared harness
from _harness import options

from cloister import Client, Credentials

if __name__ == "__main__":
    args = options("wasm simple_add")
    with Client.connect_local(args.state_dir, credentials=Credentials(args.admin_user, args.admin_password)) as admin:
        add = admin.functions.register(
            "simple_add",
            executor="wasm",
            description="adds two numbers",
            payload=(Path(__file__).parent / "simple_add.wat").read_bytes(),
            arguments=["adder1", "adder2"],
        )
        task = admin.tasks.create(add, {"adder1": "3", "adder2": "4"})
        task.invoke()
        print(f"wasm simple_add: 3 + 4 = {task.result(timeout=60).return_value.decode()}")
