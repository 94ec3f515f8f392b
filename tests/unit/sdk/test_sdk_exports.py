"""The SDK's public surface is deliberate: these lists change only on purpose."""

from __future__ import annotations

import subprocess
import sys

import cloister
import cloister.sdk


def test_exported_names() -> None:
    assert cloister.sdk.__all__ == [
        "AccessDeniedError",
        "AuthenticationError",
        "AuthenticationService",
        "Channel",
        "Client",
        "CloisterError",
        "Credentials",
        "Crypto",
        "CryptoInfo",
        "DataMap",
        "ExecutorLostError",
        "File",
        "FileHandle",
        "FrontendService",
        "Function",
        "FunctionArgument",
        "FunctionHandle",
        "FunctionInput",
        "FunctionOutput",
        "OwnerList",
        "Task",
        "TaskCancelledError",
        "TaskError",
        "TaskFailedError",
        "TaskHandle",
        "TaskNotReadyError",
        "TaskResult",
        "TaskStatus",
        "TeaclaveException",
        "TimelineEntry",
        "Trust",
        "UserExistsError",
    ]
    assert all(hasattr(cloister.sdk, name) for name in cloister.sdk.__all__)


def test_top_level_names_are_the_sdk_and_model_ones() -> None:
    assert cloister.__all__ == sorted(cloister.__all__)
    for name in cloister.__all__:
        assert getattr(cloister, name) is getattr(cloister.sdk, name), name
    assert cloister.Task.__module__ == "cloister.model.views"  # a frozen dataclass, not protobuf
    assert "Client" in dir(cloister)


def test_importing_cloister_loads_no_client_until_a_name_is_used() -> None:
    probe = (
        "import sys, cloister\n"
        "assert 'grpc' not in sys.modules and 'cloister.sdk' not in sys.modules, sorted(sys.modules)\n"
        "cloister.TaskStatus\n"
        "assert 'grpc' not in sys.modules\n"
        "cloister.Client\n"
        "assert 'cloister.sdk' in sys.modules\n"
        "try:\n"
        "    cloister.NoSuchName\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('an unknown name resolved')\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
