"""The builtin executor, executor pairing and the default task file interface."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cloister.config import SandboxLimits
from cloister.executors import BuiltinExecutor, FunctionError, Sandbox, TaskIO, create_executors, select_executor
from cloister.model.tasks import StagedTask, TaskOutputs


def staged(name: str = "builtin-echo", executor_type: str = "builtin", executor: str = "builtin", **arguments: object):
    return StagedTask(uuid.uuid4(), uuid.uuid4(), "u", executor, executor_type, name, dict(arguments), b"", {}, {})


def run(executor: BuiltinExecutor, task: StagedTask) -> TaskOutputs:
    return asyncio.run(executor.run(task, TaskIO()))


@pytest.mark.parametrize("save_log", [None, "true", "false", True])
def test_every_task_gets_its_log_and_save_log_is_an_ordinary_argument(save_log: object) -> None:
    arguments: dict[str, object] = {"message": "Hello, Teaclave Tests!"}
    if save_log is not None:
        arguments["save_log"] = save_log
    outputs = run(BuiltinExecutor(), staged(**arguments))
    assert outputs.return_value == b"Hello, Teaclave Tests!"
    assert outputs.log == ("[INFO teaclave_function::echo] Hello, Teaclave Tests!",)
    assert outputs.tags_map == {}


def test_concurrent_tasks_keep_their_logs_apart() -> None:
    executor = BuiltinExecutor()

    async def both() -> list[TaskOutputs]:
        return await asyncio.gather(*(executor.run(staged(message=f"m{i}"), TaskIO()) for i in range(8)))

    for i, outputs in enumerate(asyncio.run(both())):
        assert outputs.log == (f"[INFO teaclave_function::echo] m{i}",)


def test_unknown_function_fails_in_prepare_and_run() -> None:
    executor = BuiltinExecutor()
    with pytest.raises(FunctionError) as error:
        executor.prepare(staged("builtin-nope"))
    assert error.value.reason == "Function not found."
    with pytest.raises(FunctionError):
        run(executor, staged("builtin-nope"))


def test_bad_arguments_raise_the_functions_reason() -> None:
    with pytest.raises(FunctionError) as error:
        run(BuiltinExecutor(), staged(text="no message"))
    assert error.value.reason == "Cannot deserialize arguments"


@pytest.mark.parametrize(
    ("executor_type", "executor", "reason"),
    [
        ("builtin", "mesapy", "function not available: (Builtin, MesaPy)"),
        ("python", "builtin", "function not available: (Python, Builtin)"),
        ("python", "mesapy", "function not available: (Python, MesaPy)"),  # a pair, but not offered here
        ("wamr", "wamr", "function not available: (WAMicroRuntime, WAMicroRuntime)"),
    ],
)
def test_pairing_errors_use_the_reference_names(executor_type: str, executor: str, reason: str, tmp_path) -> None:
    executors = create_executors(["builtin"], Sandbox(SandboxLimits()))
    with pytest.raises(FunctionError) as error:
        select_executor(staged(executor_type=executor_type, executor=executor), executors)
    assert error.value.reason == reason


def test_the_builtin_pair_selects_the_builtin_executor(tmp_path) -> None:
    executors = create_executors(["builtin", "python", "wasm", "cobol"], Sandbox(SandboxLimits()))
    assert list(executors) == ["builtin", "python", "wasm"]  # unknown kinds are not offered
    assert isinstance(select_executor(staged(), executors), BuiltinExecutor)
    assert select_executor(staged(executor_type="python", executor="mesapy"), executors).kind == "python"
    assert select_executor(staged(executor_type="wamr", executor="wamr"), executors).kind == "wasm"


def test_the_default_task_io_has_no_files() -> None:
    io = TaskIO()
    with pytest.raises(FunctionError) as read:
        io.open_input("training_data")
    assert read.value.reason == "Invalid input file identifier."
    with pytest.raises(FunctionError) as write:
        io.create_output("model")
    assert write.value.reason == "Invalid output file identifier"
