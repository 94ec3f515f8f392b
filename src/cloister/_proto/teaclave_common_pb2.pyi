from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Created: _ClassVar[TaskStatus]
    DataAssigned: _ClassVar[TaskStatus]
    Approved: _ClassVar[TaskStatus]
    Staged: _ClassVar[TaskStatus]
    Running: _ClassVar[TaskStatus]
    Finished: _ClassVar[TaskStatus]
    Canceled: _ClassVar[TaskStatus]
    Failed: _ClassVar[TaskStatus]

class ExecutorStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    Idle: _ClassVar[ExecutorStatus]
    Executing: _ClassVar[ExecutorStatus]

class ExecutorCommand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NoAction: _ClassVar[ExecutorCommand]
    Stop: _ClassVar[ExecutorCommand]
    NewTask: _ClassVar[ExecutorCommand]
Created: TaskStatus
DataAssigned: TaskStatus
Approved: TaskStatus
Staged: TaskStatus
Running: TaskStatus
Finished: TaskStatus
Canceled: TaskStatus
Failed: TaskStatus
Idle: ExecutorStatus
Executing: ExecutorStatus
NoAction: ExecutorCommand
Stop: ExecutorCommand
NewTask: ExecutorCommand

class UserCredential(_message.Message):
    __slots__ = ("id", "token")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: str
    def __init__(self, id: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class FileCryptoInfo(_message.Message):
    __slots__ = ("schema", "key", "iv")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    schema: str
    key: bytes
    iv: bytes
    def __init__(self, schema: _Optional[str] = ..., key: _Optional[bytes] = ..., iv: _Optional[bytes] = ...) -> None: ...

class TaskOutputs(_message.Message):
    __slots__ = ("return_value", "tags_map", "log")
    class TagsMapEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    RETURN_VALUE_FIELD_NUMBER: _ClassVar[int]
    TAGS_MAP_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    return_value: bytes
    tags_map: _containers.ScalarMap[str, bytes]
    log: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, return_value: _Optional[bytes] = ..., tags_map: _Optional[_Mapping[str, bytes]] = ..., log: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskFailure(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("Ok", "Err")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    Ok: TaskOutputs
    Err: TaskFailure
    def __init__(self, Ok: _Optional[_Union[TaskOutputs, _Mapping]] = ..., Err: _Optional[_Union[TaskFailure, _Mapping]] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("microsecond", "ip", "user", "message", "result")
    MICROSECOND_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    microsecond: int
    ip: bytes
    user: str
    message: str
    result: bool
    def __init__(self, microsecond: _Optional[int] = ..., ip: _Optional[bytes] = ..., user: _Optional[str] = ..., message: _Optional[str] = ..., result: _Optional[bool] = ...) -> None: ...
