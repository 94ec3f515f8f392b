"""Domain types and their persisted JSON form (layer 1: pure Python, no grpc, no I/O).

Persisted records use the JSON layout of reference §3.2 so that staged tasks, which travel on
the wire, are exactly what Teaclave executors expect.
"""
