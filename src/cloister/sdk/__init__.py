"""Client SDK (layer 5): the Pythonic :class:`Client` and Teaclave-compatible classes.

Every connection verifies the service's attestation report against the root CA and
``enclave_info.toml`` before a request is sent. ``Client`` returns frozen values
(:mod:`cloister.model.views`) and handles; ``AuthenticationService`` and ``FrontendService``
keep the names and methods of Teaclave's Python SDK.
"""

from cloister.errors import (
    AccessDeniedError,
    AuthenticationError,
    CloisterError,
    ExecutorLostError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskNotReadyError,
    UserExistsError,
)
from cloister.model.tasks import TaskStatus
from cloister.model.views import File, Function, Task, TaskResult, TimelineEntry
from cloister.sdk._channel import Channel
from cloister.sdk._client import Client
from cloister.sdk._files import Crypto, FileHandle
from cloister.sdk._functions import FunctionHandle
from cloister.sdk._tasks import TaskHandle
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
from cloister.sdk._trust import Credentials, Trust

__all__ = [
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
