"""The platform's overhead on real built-in work: GBDT and logistic-regression training at scale,
run through a task (encrypted input and output, sandboxed worker) and called directly in-process.

Usage: python -m benchmarks.builtin_overhead
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from cloister.crypto.files import encrypt_file
from cloister.executors import TaskFiles
from cloister.functions import builtin_functions
from cloister.model.files import FileCrypto
from cloister.sdk import (
    AuthenticationService,
    DataMap,
    FrontendService,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    OwnerList,
)
from cloister.testing import start_platform

CASES = {
    "builtin-gbdt-train": (
        (100_000, 20),
        {"feature_size": 20, "max_depth": 4, "iterations": 50, "shrinkage": 0.1, "feature_sample_ratio": 1.0,
         "data_sample_ratio": 1.0, "min_leaf_size": 1, "loss": "LAD", "training_optimization_level": 2},
        "training_data", "trained_model",
    ),
    "builtin-logistic-regression-train": (
        (1_000_000, 10), {"alg_alpha": 0.3, "alg_iters": 10, "feature_size": 10}, "training_data", "model_file",
    ),
}  # fmt: skip


def _data(path: Path, rows: int, features: int) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, features))
    y = (x @ rng.normal(size=features) > 0).astype(float)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.6f")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {"CLOISTER_EXECUTION__FILE_ROOTS": str(work), "CLOISTER_SANDBOX__MEMORY_BYTES": str(8 * 1024**3)}
        (work / "platform").mkdir()
        platform = start_platform(work / "platform", executor_timeout=120.0, env=env)
        try:
            auth = AuthenticationService(*platform.connection_args("authentication"))
            auth.user_login(platform.admin_user, platform.admin_password)
            frontend = FrontendService(*platform.connection_args("frontend"))
            frontend.metadata = dict(auth.metadata or {})
            me = [platform.admin_user]
            for name, ((rows, features), arguments, input_name, output_name) in CASES.items():
                plain = work / f"{name}.csv"
                _data(plain, rows, features)
                started = time.perf_counter()
                out_fd = os.open(work / "direct.out", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                files = TaskFiles({input_name: plain}, {output_name: out_fd})
                builtin_functions()[name].run(dict(arguments), files)
                files.close()
                direct = time.perf_counter() - started

                crypto = FileCrypto("aes-gcm-128", os.urandom(16), os.urandom(12))
                tag = encrypt_file(crypto, plain, work / f"{name}.enc")
                function_id = frontend.register_function(
                    name, "bench", "builtin", arguments=[FunctionArgument(k) for k in arguments],
                    inputs=[FunctionInput(input_name)], outputs=[FunctionOutput(output_name)],
                )  # fmt: skip
                task_id = frontend.create_task(
                    function_id, arguments, "builtin",
                    inputs_ownership=[OwnerList(input_name, me)], outputs_ownership=[OwnerList(output_name, me)],
                )  # fmt: skip
                data_in = frontend.register_input_file(
                    f"file://{work}/{name}.enc", crypto.schema, crypto.key, crypto.iv, tag
                )
                data_out = frontend.register_output_file(
                    f"file://{work}/{name}.out", crypto.schema, crypto.key, crypto.iv
                )
                frontend.assign_data_to_task(task_id, [DataMap(input_name, data_in)], [DataMap(output_name, data_out)])
                started = time.perf_counter()
                frontend.invoke_task(task_id)
                summary = frontend.get_task_result(task_id).decode()
                through = time.perf_counter() - started
                print(
                    f"{name:<36} {rows:>9,} rows x {features:>2}: direct {direct:6.1f} s, "
                    f"as a task {through:6.1f} s = {through / direct:5.2f} x direct ({summary})"
                )
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
