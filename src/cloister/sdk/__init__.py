"""Client SDK (layer 5): Teaclave-compatible classes over attested connections.

Every connection verifies the service's attestation report against the root CA and
``enclave_info.toml`` before a request is sent.
"""

from cloister.errors import (
    AccessDeniedError,
    AuthenticationError,
    CloisterError,
    ExecutorLostError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
)
from cloister.sdk._teaclave import (
    AuthenticationService,
    CryptoInfo,
    DataMap,
    FrontendService,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    OwnerList,
    TeaclaveException,
)

__all__ = [
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
