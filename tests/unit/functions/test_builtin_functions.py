"""Built-in discovery, builtin-echo, and per-task log capture."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cloister.functions as functions
from cloister.functions import (
    MAX_LOG_BYTES,
    MAX_LOG_LINES,
    FunctionError,
    builtin_functions,
    builtin_names,
    capture_task_log,
    echo,
    find_function,
    function_logger,
)


def test_discovery_finds_echo_by_its_teaclave_name() -> None:
    function = find_function("builtin-echo")
    assert function.run is echo.run
    assert function.module == "cloister.functions.echo"
    assert "builtin-echo" in builtin_functions()


def test_the_names_read_without_importing_are_the_names_discovered() -> None:
    """Management checks a builtin function's name against builtin_names(), which reads the sources."""
    assert builtin_names() == set(builtin_functions())
    assert {"builtin-echo", "builtin_online_decrypt", "builtin_principal_components_analysis"} <= builtin_names()


def test_an_unknown_name_is_function_not_found() -> None:
    with pytest.raises(FunctionError) as error:
        find_function("builtin-nope")
    assert error.value.reason == "Function not found."
    with pytest.raises(FunctionError):
        find_function("Builtin-Echo")  # exact, case-sensitive


@pytest.fixture
def extra_package_dir(tmp_path: Path) -> Iterator[Path]:
    functions.__path__.append(str(tmp_path))
    builtin_functions.cache_clear()
    try:
        yield tmp_path
    finally:
        functions.__path__.remove(str(tmp_path))
        builtin_functions.cache_clear()
        for name in [n for n in sys.modules if n.startswith("cloister.functions.extra_")]:
            del sys.modules[name]


def test_a_new_module_is_registered_without_changes_elsewhere(extra_package_dir: Path) -> None:
    (extra_package_dir / "extra_upper.py").write_text(
        'NAME = "builtin-upper"\n\ndef run(arguments, runtime):\n    return arguments["text"].upper()\n'
    )
    (extra_package_dir / "extra_helper.py").write_text("VALUE = 1\n")  # not a function: ignored
    (extra_package_dir / "_extra_private.py").write_text('NAME = "hidden"\n\ndef run(a, r):\n    return ""\n')
    registry = builtin_functions()
    assert registry["builtin-upper"].run({"text": "abc"}, None) == "ABC"
    assert "hidden" not in registry
    assert "builtin-echo" in registry


def test_echo_returns_its_message_and_ignores_other_arguments() -> None:
    assert echo.run({"message": "Hello From Teaclave!", "save_log": "true", "x": 1}, None) == "Hello From Teaclave!"  # type: ignore[arg-type]


@pytest.mark.parametrize("arguments", [{}, {"message": 1}, {"message": None}, {"message": ["a"]}])
def test_echo_needs_a_string_message(arguments: dict) -> None:
    with pytest.raises(FunctionError) as error:
        echo.run(arguments, None)  # type: ignore[arg-type]
    assert error.value.reason == "Cannot deserialize arguments"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_function_logs_reach_the_task_log_only() -> None:
    service_log = _Collect()  # what a service's configured root handlers would see
    root = logging.getLogger()
    root.addHandler(service_log)
    try:
        with capture_task_log() as log:
            echo.run({"message": "Hello, Teaclave Tests!"}, None)  # type: ignore[arg-type]
        echo.run({"message": "outside any task"}, None)  # type: ignore[arg-type]
    finally:
        root.removeHandler(service_log)
    assert log.lines == ("[INFO teaclave_function::echo] Hello, Teaclave Tests!",)
    assert not {"Hello, Teaclave Tests!", "outside any task"} & set(service_log.messages)


def test_levels_use_rust_names_and_debug_is_not_captured() -> None:
    logger = function_logger("teaclave_function::levels")
    with capture_task_log() as log:
        logger.debug("hidden")
        logger.warning("careful")
        logger.error("broken")
    assert log.lines == ("[WARN teaclave_function::levels] careful", "[ERROR teaclave_function::levels] broken")


def test_each_task_captures_only_its_own_records() -> None:
    logger = function_logger("teaclave_function::threads")

    async def task(name: str) -> tuple[str, ...]:
        with capture_task_log() as log:
            for i in range(20):
                await asyncio.to_thread(logger.info, "%s %d", name, i)
        return log.lines

    async def both() -> list[tuple[str, ...]]:
        return await asyncio.gather(task("a"), task("b"))

    a, b = asyncio.run(both())
    assert len(a) == len(b) == 20
    assert all(" a " in line for line in a) and all(" b " in line for line in b)


def test_the_log_is_capped_in_lines_and_bytes() -> None:
    logger = function_logger("teaclave_function::chatty")
    with capture_task_log() as log:
        for i in range(MAX_LOG_LINES + 50):
            logger.info("line %d", i)
    assert len(log.lines) == MAX_LOG_LINES
    assert log.truncated and "truncated" in log.lines[-1]
    with capture_task_log() as big:
        for _ in range(100):
            logger.info("x" * 4096)
    assert sum(len(line.encode()) for line in big.lines) <= MAX_LOG_BYTES
    assert "truncated" in big.lines[-1]
