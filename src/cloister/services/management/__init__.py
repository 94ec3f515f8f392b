"""Management service: the business logic of functions, files, tasks and audit logs (§6-§8, §13).

Only the frontend calls it. ``servicer.py`` decodes and encodes; ``functions``, ``files``,
``tasks`` and ``audit`` hold the logic; every object-level authorization decision lives in
``permissions``. It may import ``model``, ``rpc`` (including ``rpc.convert``) and ``storage``.
"""
