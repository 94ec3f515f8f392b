"""Scheduler service: hands staged tasks to execution services and tracks them to their end.

Its state lives in memory and is rebuilt from storage at start: staged tasks and cancellations
stay in their storage queues until acknowledged, and every hand-out is recorded durably in the
same commit that marks the task Running. It imports ``model``, ``rpc``, ``storage`` and
``executors`` (for the executor kinds), never another service.
"""
