"""Sandboxed task workers: the only place untrusted function code runs.

Design, and what lost: running user code in the service's process behind import hooks or
restricted builtins was rejected outright (Python cannot contain Python). A fresh ``bwrap``
sandbox per task contained well but cost a Python start-up and numpy import per task (~0.3 s).
What is here: one *zygote* process per execution service, started inside bubblewrap with no
network (its own empty network namespace), no ``/proc``, a read-only view of nothing but the
Python runtime, and no capabilities; it imports the runtimes once and forks a child per task.
Before running any user code the child sets its resource limits and loads a seccomp filter
(no processes, no exec, no sockets, no signals to others, no tracing). It sees its task's files
only as descriptors the execution service opened for it, and can write only to those and to its
private scratch directory, which it reaches by descriptor too. If any layer cannot be set up,
the task fails: nothing runs unprotected.
"""
