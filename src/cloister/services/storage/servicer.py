"""Storage RPCs: decode, call the store, encode.

Teaclave's storage answers every failure with INTERNAL; so does this one, with a message that
says what failed, except a full disk: RESOURCE_EXHAUSTED, which management and the frontend pass
on to the client as it is.
"""

from __future__ import annotations

from google.protobuf import empty_pb2

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_storage_service_pb2 as spb
from cloister._proto import teaclave_storage_service_pb2_grpc as sgrpc
from cloister.errors import InternalError, InvalidArgumentError, NotFoundError
from cloister.rpc.long_poll import granted_wait
from cloister.storage.client import MAX_READ_KEYS, op_from_proto
from cloister.storage.engine import Storage
from cloister.storage.ops import Check, CheckValue, Delete, Dequeue, Enqueue, Put, Versioned, written

MAX_KEY_LENGTH = 1024
_EMPTY = empty_pb2.Empty()


def _key(key: bytes) -> bytes:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidArgumentError(f"storage keys must be 1 to {MAX_KEY_LENGTH} bytes")
    return key


def _versioned(value: Versioned | None) -> cpb.VersionedValue:
    if value is None:
        return cpb.VersionedValue(found=False)
    return cpb.VersionedValue(found=True, value=value.value, version=value.version)


def _timeout(ms: int) -> float:
    return granted_wait(ms / 1000)


class TeaclaveStorageServicer(sgrpc.TeaclaveStorageServicer):
    def __init__(self, store: Storage) -> None:
        self._store = store

    async def Get(self, request: spb.GetRequest, context: object) -> spb.GetResponse:
        value = await self._store.get(_key(request.key))
        if value is None:
            raise InternalError("invalid response: key not found")
        return spb.GetResponse(value=value.value)

    async def Put(self, request: spb.PutRequest, context: object) -> empty_pb2.Empty:
        await self._store.commit([Put(_key(request.key), request.value)])
        return _EMPTY

    async def Delete(self, request: spb.DeleteRequest, context: object) -> empty_pb2.Empty:
        await self._store.commit([Delete(_key(request.key))])
        return _EMPTY

    async def Enqueue(self, request: spb.EnqueueRequest, context: object) -> empty_pb2.Empty:
        await self._store.commit([Enqueue(_key(request.key), request.value)])
        return _EMPTY

    async def Dequeue(self, request: spb.DequeueRequest, context: object) -> spb.DequeueResponse:
        try:
            (value,) = await self._store.commit([Dequeue(_key(request.key))])
        except NotFoundError:
            raise InternalError("invalid response: queue is empty") from None
        assert value is None or isinstance(value, bytes)  # a Dequeue's result is its value
        return spb.DequeueResponse(value=value or b"")

    async def GetKeysByPrefix(
        self, request: spb.GetKeysByPrefixRequest, context: object
    ) -> spb.GetKeysByPrefixResponse:
        return spb.GetKeysByPrefixResponse(keys=await self._store.keys_with_prefix(request.prefix))


class StorageServicer(cgrpc.StorageServicer):
    def __init__(self, store: Storage) -> None:
        self._store = store

    async def Commit(self, request: cpb.CommitRequest, context: object) -> cpb.CommitResponse:
        try:
            ops = [op_from_proto(op) for op in request.ops]
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from None
        for op in ops:
            _key(op.key if isinstance(op, Put | Delete | Check | CheckValue) else op.queue)
        results = await self._store.commit(ops)
        versions = written(ops, results)
        return cpb.CommitResponse(versions=[versions.get(op.key, 0) if isinstance(op, Put) else 0 for op in ops])

    async def Read(self, request: cpb.ReadRequest, context: object) -> cpb.ReadResponse:
        if len(request.keys) > MAX_READ_KEYS:
            raise InvalidArgumentError(f"at most {MAX_READ_KEYS} keys per read")
        values = await self._store.read([_key(k) for k in request.keys])
        return cpb.ReadResponse(values=[_versioned(v) for v in values])

    async def Watch(self, request: cpb.WatchRequest, context: object) -> cpb.VersionedValue:
        value = await self._store.watch(_key(request.key), request.after_version, _timeout(request.timeout_ms))
        return _versioned(value)

    async def WatchQueue(self, request: cpb.WatchQueueRequest, context: object) -> cpb.WatchQueueResponse:
        limit = max(1, min(request.max_items or 100, 1000))
        items = await self._store.watch_queue(
            _key(request.queue), request.after_seq, limit, _timeout(request.timeout_ms)
        )
        return cpb.WatchQueueResponse(items=[cpb.QueueItem(seq=i.seq, value=i.value) for i in items])
