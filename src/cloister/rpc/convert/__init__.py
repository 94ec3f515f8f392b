"""Protobuf ↔ ``cloister.model`` conversion (layer 3), done once, at the wire boundary.

These modules may import ``cloister._proto``, ``cloister.errors`` and ``cloister.model``; the
model never imports protobuf, and services, scheduler and SDK convert only through here.
Decoding also bounds what a hostile request may carry (:mod:`cloister.rpc.convert.limits`).
"""
