"""Commit operations survive the trip to the storage service unchanged, the conditional one included."""

from __future__ import annotations

import pytest

from cloister._proto import cloister_pb2 as cpb
from cloister.storage.client import op_from_proto, op_to_proto
from cloister.storage.ops import Ack, Check, CheckValue, Delete, Enqueue, Op, Put


@pytest.mark.parametrize(
    "op",
    [
        Put(b"k", b"v"),
        Delete(b"k"),
        Enqueue(b"q", b"v"),
        Ack(b"q", 7),
        Check(b"task-1", 0),
        Check(b"task-1", 42),
        CheckValue(b"task-1", bytes(range(32))),
    ],
)
def test_an_op_round_trips(op: Op) -> None:
    assert op_from_proto(op_to_proto(op)) == op


@pytest.mark.parametrize("digest", [b"", b"short", bytes(33)])
def test_a_value_check_names_its_value_by_a_whole_sha256(digest: bytes) -> None:
    message = cpb.StorageOp(check_value=cpb.CheckValueOp(key=b"task-1", sha256=digest))
    with pytest.raises(ValueError, match="SHA-256"):
        op_from_proto(message)
