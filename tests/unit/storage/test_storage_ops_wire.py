"""Commit operations survive the trip to the storage service unchanged, the conditional one included."""

from __future__ import annotations

import pytest

from cloister.storage.client import op_from_proto, op_to_proto
from cloister.storage.ops import Ack, Check, Delete, Enqueue, Op, Put


@pytest.mark.parametrize(
    "op",
    [Put(b"k", b"v"), Delete(b"k"), Enqueue(b"q", b"v"), Ack(b"q", 7), Check(b"task-1", 0), Check(b"task-1", 42)],
)
def test_an_op_round_trips(op: Op) -> None:
    assert op_from_proto(op_to_proto(op)) == op
