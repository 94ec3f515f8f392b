from . import teaclave_frontend_service_pb2 as _teaclave_frontend_service_pb2
from . import teaclave_common_pb2 as _teaclave_common_pb2
from . import teaclave_scheduler_service_pb2 as _teaclave_scheduler_service_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WaitTaskRequest(_message.Message):
    __slots__ = ("task_id", "timeout_ms", "return_if_stuck")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RETURN_IF_STUCK_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    timeout_ms: int
    return_if_stuck: bool
    def __init__(self, task_id: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., return_if_stuck: _Optional[bool] = ...) -> None: ...

class FunctionRequirementsRequest(_message.Message):
    __slots__ = ("function_id", "labels")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, function_id: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("awaiting_my_approval", "statuses", "page_size", "page_token")
    AWAITING_MY_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    awaiting_my_approval: bool
    statuses: _containers.RepeatedScalarFieldContainer[_teaclave_common_pb2.TaskStatus]
    page_size: int
    page_token: str
    def __init__(self, awaiting_my_approval: _Optional[bool] = ..., statuses: _Optional[_Iterable[_Union[_teaclave_common_pb2.TaskStatus, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_teaclave_frontend_service_pb2.GetTaskResponse]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[_teaclave_frontend_service_pb2.GetTaskResponse, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class QueryAuditPageRequest(_message.Message):
    __slots__ = ("query", "limit", "after")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    query: str
    limit: int
    after: int
    def __init__(self, query: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[int] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("seq", "entry")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    seq: int
    entry: _teaclave_common_pb2.Entry
    def __init__(self, seq: _Optional[int] = ..., entry: _Optional[_Union[_teaclave_common_pb2.Entry, _Mapping]] = ...) -> None: ...

class QueryAuditPageResponse(_message.Message):
    __slots__ = ("records", "next_after", "head", "cut_through")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    CUT_THROUGH_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    next_after: int
    head: int
    cut_through: int
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ..., next_after: _Optional[int] = ..., head: _Optional[int] = ..., cut_through: _Optional[int] = ...) -> None: ...

class GetTaskReceiptRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetTaskReceiptResponse(_message.Message):
    __slots__ = ("receipt", "manifest", "history")
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    receipt: str
    manifest: bytes
    history: _containers.RepeatedCompositeFieldContainer[TaskEvent]
    def __init__(self, receipt: _Optional[str] = ..., manifest: _Optional[bytes] = ..., history: _Optional[_Iterable[_Union[TaskEvent, _Mapping]]] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("microsecond", "what", "user_id")
    MICROSECOND_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    microsecond: int
    what: str
    user_id: str
    def __init__(self, microsecond: _Optional[int] = ..., what: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class RejectTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class PutOp(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class DeleteOp(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class EnqueueOp(_message.Message):
    __slots__ = ("queue", "value")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    queue: bytes
    value: bytes
    def __init__(self, queue: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class AckOp(_message.Message):
    __slots__ = ("queue", "seq")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    queue: bytes
    seq: int
    def __init__(self, queue: _Optional[bytes] = ..., seq: _Optional[int] = ...) -> None: ...

class CheckOp(_message.Message):
    __slots__ = ("key", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    version: int
    def __init__(self, key: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class CheckValueOp(_message.Message):
    __slots__ = ("key", "sha256")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    sha256: bytes
    def __init__(self, key: _Optional[bytes] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class StorageOp(_message.Message):
    __slots__ = ("put", "delete", "enqueue", "ack", "check", "check_value")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    ENQUEUE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    CHECK_VALUE_FIELD_NUMBER: _ClassVar[int]
    put: PutOp
    delete: DeleteOp
    enqueue: EnqueueOp
    ack: AckOp
    check: CheckOp
    check_value: CheckValueOp
    def __init__(self, put: _Optional[_Union[PutOp, _Mapping]] = ..., delete: _Optional[_Union[DeleteOp, _Mapping]] = ..., enqueue: _Optional[_Union[EnqueueOp, _Mapping]] = ..., ack: _Optional[_Union[AckOp, _Mapping]] = ..., check: _Optional[_Union[CheckOp, _Mapping]] = ..., check_value: _Optional[_Union[CheckValueOp, _Mapping]] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[StorageOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[StorageOp, _Mapping]]] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, versions: _Optional[_Iterable[int]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("key", "after_version", "timeout_ms")
    KEY_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    after_version: int
    timeout_ms: int
    def __init__(self, key: _Optional[bytes] = ..., after_version: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class VersionedValue(_message.Message):
    __slots__ = ("found", "value", "version")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    version: int
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[VersionedValue]
    def __init__(self, values: _Optional[_Iterable[_Union[VersionedValue, _Mapping]]] = ...) -> None: ...

class WatchQueueRequest(_message.Message):
    __slots__ = ("queue", "after_seq", "max_items", "timeout_ms")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    queue: bytes
    after_seq: int
    max_items: int
    timeout_ms: int
    def __init__(self, queue: _Optional[bytes] = ..., after_seq: _Optional[int] = ..., max_items: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class QueueItem(_message.Message):
    __slots__ = ("seq", "value")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    value: bytes
    def __init__(self, seq: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class WatchQueueResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[QueueItem]
    def __init__(self, items: _Optional[_Iterable[_Union[QueueItem, _Mapping]]] = ...) -> None: ...

class ExecutorInfo(_message.Message):
    __slots__ = ("executor_id", "executors", "labels", "slots")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    executors: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    def __init__(self, executor_id: _Optional[str] = ..., executors: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ...) -> None: ...

class PullTaskWaitRequest(_message.Message):
    __slots__ = ("executor", "timeout_ms", "cached_payloads")
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    CACHED_PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    executor: ExecutorInfo
    timeout_ms: int
    cached_payloads: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, executor: _Optional[_Union[ExecutorInfo, _Mapping]] = ..., timeout_ms: _Optional[int] = ..., cached_payloads: _Optional[_Iterable[str]] = ...) -> None: ...

class PullTaskWaitResponse(_message.Message):
    __slots__ = ("staged_task", "manifest", "traceparent", "function_payload", "payload_sha256")
    STAGED_TASK_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    staged_task: bytes
    manifest: bytes
    traceparent: str
    function_payload: bytes
    payload_sha256: str
    def __init__(self, staged_task: _Optional[bytes] = ..., manifest: _Optional[bytes] = ..., traceparent: _Optional[str] = ..., function_payload: _Optional[bytes] = ..., payload_sha256: _Optional[str] = ...) -> None: ...

class ConfirmTaskRequest(_message.Message):
    __slots__ = ("executor", "task_id")
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    executor: ExecutorInfo
    task_id: str
    def __init__(self, executor: _Optional[_Union[ExecutorInfo, _Mapping]] = ..., task_id: _Optional[str] = ...) -> None: ...

class ReportTaskResultRequest(_message.Message):
    __slots__ = ("update", "receipt")
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    update: _teaclave_scheduler_service_pb2.UpdateTaskResultRequest
    receipt: str
    def __init__(self, update: _Optional[_Union[_teaclave_scheduler_service_pb2.UpdateTaskResultRequest, _Mapping]] = ..., receipt: _Optional[str] = ...) -> None: ...

class ExecutorHeartbeatRequest(_message.Message):
    __slots__ = ("executor", "running_task_ids", "wait_ms")
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    executor: ExecutorInfo
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    wait_ms: int
    def __init__(self, executor: _Optional[_Union[ExecutorInfo, _Mapping]] = ..., running_task_ids: _Optional[_Iterable[str]] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class ExecutorHeartbeatResponse(_message.Message):
    __slots__ = ("cancel_task_ids",)
    CANCEL_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    cancel_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cancel_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthorizationSubject(_message.Message):
    __slots__ = ("user_id", "role")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    role: str
    def __init__(self, user_id: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class AuthorizationQuery(_message.Message):
    __slots__ = ("action", "resource_id", "attributes_json")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    action: str
    resource_id: str
    attributes_json: str
    def __init__(self, action: _Optional[str] = ..., resource_id: _Optional[str] = ..., attributes_json: _Optional[str] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("subject", "queries")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    subject: AuthorizationSubject
    queries: _containers.RepeatedCompositeFieldContainer[AuthorizationQuery]
    def __init__(self, subject: _Optional[_Union[AuthorizationSubject, _Mapping]] = ..., queries: _Optional[_Iterable[_Union[AuthorizationQuery, _Mapping]]] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("allowed",)
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    allowed: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, allowed: _Optional[_Iterable[bool]] = ...) -> None: ...

class EndorseRequest(_message.Message):
    __slots__ = ("tee_backend", "quote", "evidence_signature", "public_key", "service", "certificates", "collateral")
    TEE_BACKEND_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    COLLATERAL_FIELD_NUMBER: _ClassVar[int]
    tee_backend: str
    quote: bytes
    evidence_signature: bytes
    public_key: bytes
    service: str
    certificates: bytes
    collateral: bytes
    def __init__(self, tee_backend: _Optional[str] = ..., quote: _Optional[bytes] = ..., evidence_signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., service: _Optional[str] = ..., certificates: _Optional[bytes] = ..., collateral: _Optional[bytes] = ...) -> None: ...

class EndorseResponse(_message.Message):
    __slots__ = ("report", "signature", "certs", "client_certificate", "expires")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    report: bytes
    signature: bytes
    certs: _containers.RepeatedScalarFieldContainer[bytes]
    client_certificate: bytes
    expires: int
    def __init__(self, report: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certs: _Optional[_Iterable[bytes]] = ..., client_certificate: _Optional[bytes] = ..., expires: _Optional[int] = ...) -> None: ...

class CredentialChanges(_message.Message):
    __slots__ = ("seq", "user_ids", "trust_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    TRUST_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    trust_ms: int
    def __init__(self, seq: _Optional[int] = ..., user_ids: _Optional[_Iterable[str]] = ..., trust_ms: _Optional[int] = ...) -> None: ...

class CredentialAck(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...
