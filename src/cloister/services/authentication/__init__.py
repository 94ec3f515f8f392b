"""Authentication service: Cloister's user accounts, their passwords and the tokens users log in with.

It owns its own sealed user database (not the storage service) and may import ``model``,
``config``, ``errors``, ``crypto``, ``storage.sqlite``, ``rpc`` and the generated stubs; it
imports no other service.
"""
