from . import teaclave_common_pb2 as _teaclave_common_pb2
from . import teaclave_frontend_service_pb2 as _teaclave_frontend_service_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SaveLogsRequest(_message.Message):
    __slots__ = ("logs",)
    LOGS_FIELD_NUMBER: _ClassVar[int]
    logs: _containers.RepeatedCompositeFieldContainer[_teaclave_common_pb2.Entry]
    def __init__(self, logs: _Optional[_Iterable[_Union[_teaclave_common_pb2.Entry, _Mapping]]] = ...) -> None: ...
