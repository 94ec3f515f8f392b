"""Domain types and their persisted JSON form (layer 1: pure Python, no grpc, no I/O).

Persisted records use the JSON layout of reference §3.2 so that staged tasks, which travel on
the wire, are exactly what Teaclave executors expect. The names exported here are the views a
client reads (:mod:`cloister.model.views`); the stored records live in their own modules.
"""

from cloister.model.functions import FunctionArgument, FunctionFile
from cloister.model.tasks import TaskStatus
from cloister.model.views import File, Function, Task, TaskResult, TimelineEntry

__all__ = ["File", "Function", "FunctionArgument", "FunctionFile", "Task", "TaskResult", "TaskStatus", "TimelineEntry"]
