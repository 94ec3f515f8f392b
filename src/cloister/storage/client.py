"""The storage service as management and the scheduler see it: typed calls over a :class:`Peer`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_storage_service_pb2 as spb
from cloister._proto import teaclave_storage_service_pb2_grpc as sgrpc
from cloister.rpc.channel import Peer
from cloister.rpc.long_poll import long_poll_deadline
from cloister.storage.ops import (
    Ack,
    Check,
    CheckValue,
    Delete,
    Dequeue,
    Enqueue,
    Op,
    Put,
    QueueItem,
    Versioned,
    Written,
    written,
)


def op_to_proto(op: Op) -> cpb.StorageOp:
    if isinstance(op, Put):
        return cpb.StorageOp(put=cpb.PutOp(key=op.key, value=op.value))
    if isinstance(op, Delete):
        return cpb.StorageOp(delete=cpb.DeleteOp(key=op.key))
    if isinstance(op, Enqueue):
        return cpb.StorageOp(enqueue=cpb.EnqueueOp(queue=op.queue, value=op.value))
    if isinstance(op, Ack):
        return cpb.StorageOp(ack=cpb.AckOp(queue=op.queue, seq=op.seq))
    if isinstance(op, Check):
        return cpb.StorageOp(check=cpb.CheckOp(key=op.key, version=op.version))
    if isinstance(op, CheckValue):
        return cpb.StorageOp(check_value=cpb.CheckValueOp(key=op.key, sha256=op.sha256))
    raise TypeError(f"{type(op).__name__} cannot be sent in a commit")


def op_from_proto(message: cpb.StorageOp) -> Op:
    kind = message.WhichOneof("op")
    if kind == "put":
        return Put(message.put.key, message.put.value)
    if kind == "delete":
        return Delete(message.delete.key)
    if kind == "enqueue":
        return Enqueue(message.enqueue.queue, message.enqueue.value)
    if kind == "ack":
        return Ack(message.ack.queue, message.ack.seq)
    if kind == "check":
        return Check(message.check.key, message.check.version)
    if kind == "check_value":
        if len(message.check_value.sha256) != 32:
            raise ValueError("a value check names its value by a 32-byte SHA-256")
        return CheckValue(message.check_value.key, message.check_value.sha256)
    raise ValueError("storage op has no operation set")


MAX_READ_KEYS = 1000
"""The most keys the storage service answers in one Read; :meth:`StorageClient.read` splits larger reads."""


class KeyValueStore(Protocol):
    """The key-value calls of :class:`StorageClient`: what logic that needs no watches or queues
    takes, so that it also runs over a wrapper (management's cache) or a database opened in process."""

    async def get(self, key: bytes) -> bytes | None: ...

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]: ...

    async def commit(self, ops: Sequence[Op]) -> Written: ...

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]: ...


def _versioned(message: cpb.VersionedValue) -> Versioned | None:
    return Versioned(message.value, message.version) if message.found else None


class StorageClient:
    def __init__(self, peer: Peer) -> None:
        self._peer = peer

    async def get(self, key: bytes) -> bytes | None:
        (value,) = await self.read([key])
        return None if value is None else value.value

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        """Any number of keys, in order; each chunk of :data:`MAX_READ_KEYS` comes from one snapshot."""
        values: list[Versioned | None] = []
        for start in range(0, len(keys), MAX_READ_KEYS):
            request = cpb.ReadRequest(keys=list(keys[start : start + MAX_READ_KEYS]))
            response = await self._peer.call(cgrpc.StorageStub, "Read", request)
            values.extend(_versioned(v) for v in response.values)
        return values

    async def commit(self, ops: Sequence[Op]) -> Written:
        response = await self._peer.call(
            cgrpc.StorageStub, "Commit", cpb.CommitRequest(ops=[op_to_proto(o) for o in ops])
        )
        return written(ops, list(response.versions))

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        response = await self._peer.call(
            sgrpc.TeaclaveStorageStub, "GetKeysByPrefix", spb.GetKeysByPrefixRequest(prefix=prefix)
        )
        return list(response.keys)

    async def watch(self, key: bytes, after_version: int, timeout: float) -> Versioned | None:
        request = cpb.WatchRequest(key=key, after_version=after_version, timeout_ms=int(timeout * 1000))
        response = await self._peer.call(cgrpc.StorageStub, "Watch", request, timeout=long_poll_deadline(timeout))
        return _versioned(response)

    async def watch_queue(self, queue: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        request = cpb.WatchQueueRequest(
            queue=queue, after_seq=after_seq, max_items=limit, timeout_ms=int(timeout * 1000)
        )
        response = await self._peer.call(cgrpc.StorageStub, "WatchQueue", request, timeout=long_poll_deadline(timeout))
        return [QueueItem(item.seq, item.value) for item in response.items]


__all__ = ["Ack", "Check", "Delete", "Dequeue", "Enqueue", "KeyValueStore", "Put", "StorageClient"]
