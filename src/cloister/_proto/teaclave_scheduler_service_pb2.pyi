from . import teaclave_common_pb2 as _teaclave_common_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeResponse(_message.Message):
    __slots__ = ("success",)
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    def __init__(self, success: _Optional[bool] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("executor_id", "status")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    status: _teaclave_common_pb2.ExecutorStatus
    def __init__(self, executor_id: _Optional[str] = ..., status: _Optional[_Union[_teaclave_common_pb2.ExecutorStatus, str]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: _teaclave_common_pb2.ExecutorCommand
    def __init__(self, command: _Optional[_Union[_teaclave_common_pb2.ExecutorCommand, str]] = ...) -> None: ...

class PullTaskRequest(_message.Message):
    __slots__ = ("executor_id",)
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    def __init__(self, executor_id: _Optional[str] = ...) -> None: ...

class PullTaskResponse(_message.Message):
    __slots__ = ("staged_task",)
    STAGED_TASK_FIELD_NUMBER: _ClassVar[int]
    staged_task: bytes
    def __init__(self, staged_task: _Optional[bytes] = ...) -> None: ...

class UpdateTaskStatusRequest(_message.Message):
    __slots__ = ("task_id", "task_status")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_STATUS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_status: _teaclave_common_pb2.TaskStatus
    def __init__(self, task_id: _Optional[str] = ..., task_status: _Optional[_Union[_teaclave_common_pb2.TaskStatus, str]] = ...) -> None: ...

class UpdateTaskResultRequest(_message.Message):
    __slots__ = ("task_id", "result")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    result: _teaclave_common_pb2.TaskResult
    def __init__(self, task_id: _Optional[str] = ..., result: _Optional[_Union[_teaclave_common_pb2.TaskResult, _Mapping]] = ...) -> None: ...

class PublishTaskRequest(_message.Message):
    __slots__ = ("staged_task",)
    STAGED_TASK_FIELD_NUMBER: _ClassVar[int]
    staged_task: bytes
    def __init__(self, staged_task: _Optional[bytes] = ...) -> None: ...
