from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AuthorizeApiRequest(_message.Message):
    __slots__ = ("user_role", "api")
    USER_ROLE_FIELD_NUMBER: _ClassVar[int]
    API_FIELD_NUMBER: _ClassVar[int]
    user_role: str
    api: str
    def __init__(self, user_role: _Optional[str] = ..., api: _Optional[str] = ...) -> None: ...

class AuthorizeApiResponse(_message.Message):
    __slots__ = ("accept",)
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    accept: bool
    def __init__(self, accept: _Optional[bool] = ...) -> None: ...
