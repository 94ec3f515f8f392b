"""Management service: the business logic of functions, files, tasks and audit logs (§6-§8, §13).

The frontend calls it. ``servicer.py`` decodes and encodes; ``functions``, ``files``, ``tasks``
and ``audit`` hold the logic and enforce decisions they do not make: ``authorizer`` asks the
access control service's policy about each one. It may import ``model``, ``rpc`` (including
``rpc.convert``) and ``storage``.
"""
