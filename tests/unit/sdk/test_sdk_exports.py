"""The SDK's public surface is deliberate: this list changes only on purpose."""

from __future__ import annotations

import cloister.sdk


def test_exported_names() -> None:
    assert cloister.sdk.__all__ == [
        "AccessDeniedError",
        "AuthenticationError",
        "AuthenticationService",
        "CloisterError",
        "CryptoInfo",
        "DataMap",
        "ExecutorLostError",
        "FrontendService",
        "FunctionArgument",
        "FunctionInput",
        "FunctionOutput",
        "OwnerList",
        "TaskCancelledError",
        "TaskError",
        "TaskFailedError",
        "TeaclaveException",
    ]
    assert all(hasattr(cloister.sdk, name) for name in cloister.sdk.__all__)
