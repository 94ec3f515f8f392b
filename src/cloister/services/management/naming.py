"""Storage keys that stand for a user without naming them: keyed hashes of the user id.

Records kept per user (a user's function lists, their entries in the task index) need a key
derived from the user id, and the database's operator must not learn the id from it. The key of
the hash is random, created once by the first management to need it and kept in storage,
sealed like every value, so every management replica (and a restored backup) derives the same
names. Each use hashes with its own label, so the names of one user in two uses do not match.
"""

from __future__ import annotations

import contextlib
import hmac
import os

from cloister.errors import ConflictError, InternalError
from cloister.storage.client import KeyValueStore
from cloister.storage.ops import Check, Put

KEY_KEY = b"names-key"
KEY_BYTES = 32
_TAG_BYTES = 16


def user_tag(key: bytes, purpose: str, user_id: str) -> bytes:
    """The hex name of ``user_id`` for ``purpose`` under ``key``."""
    message = purpose.encode() + b"\x00" + user_id.encode("utf-8", "surrogatepass")
    return hmac.digest(key, message, "sha256")[:_TAG_BYTES].hex().encode()


class Names:
    """The naming key, read (or created) on first use."""

    def __init__(self, storage: KeyValueStore) -> None:
        self._storage = storage
        self._key: bytes | None = None

    async def key(self) -> bytes:
        while self._key is None:
            (stored,) = await self._storage.read([KEY_KEY])
            if stored is not None:
                if len(stored.value) != KEY_BYTES:
                    raise InternalError("the naming key is damaged")
                self._key = stored.value
                break
            # Another management replica may create it first: then this commit fails and theirs is read.
            with contextlib.suppress(ConflictError):
                await self._storage.commit([Check(KEY_KEY, 0), Put(KEY_KEY, os.urandom(KEY_BYTES))])
        return self._key

    async def user_tag(self, purpose: str, user_id: str) -> bytes:
        return user_tag(await self.key(), purpose, user_id)
