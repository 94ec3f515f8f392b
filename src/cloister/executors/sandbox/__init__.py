"""Sandboxed task workers: the only place untrusted function code runs.

Design, and what lost: running user code in the service's process behind import hooks or
restricted builtins was rejected outright (Python cannot contain Python). A fresh ``bwrap``
sandbox per task contained well but cost a Python start-up and numpy import per task (~0.3 s).
One forked child per task inside a single shared sandbox was cheap but let tasks reach each
other (one uid, one mount, pid and IPC namespace). What is here: one *template* (``zygote``)
per execution service, inside bubblewrap with a read-only view of the Python runtime only,
which forks each task a sandbox of its own: pid 1 of fresh namespaces, its own host uid, cgroup
and tmpfs, no capabilities, seccomp (``isolation``, ``child``). Files cross as descriptors the
service opened (``host``). If any layer cannot be set up, the task fails: nothing runs
unprotected. ``docs/sandbox.md`` lists every layer and what it stops.
"""
