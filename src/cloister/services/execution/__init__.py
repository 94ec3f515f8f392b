"""Execution service: pulls staged tasks from the scheduler, runs them, reports their results.

It has no listener. Several tasks run at once (``execution.slots``); a long-poll heartbeat
keeps it alive in the scheduler's eyes and brings cancellations within milliseconds, and a
cancellation stops only that task. It imports ``executors``, ``model`` and ``rpc``.
"""
