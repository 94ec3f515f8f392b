"""Sealing values at rest: AES-256-GCM with a random nonce, bound to the value's key.

Output layout: ``0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)``; the leading byte names the recipe
so that a later one can be introduced without guessing.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloister.crypto.secret_files import create_secret_file
from cloister.errors import ConfigurationError, InternalError

_VERSION = b"\x01"
_NONCE = 12
KEY_LENGTH = 32


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LENGTH:
            raise ValueError("sealing key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def unseal(self, sealed: bytes, context: bytes) -> bytes:
        """Raises ``InternalError`` when the value was altered, moved or sealed under another key."""
        if not sealed.startswith(_VERSION) or len(sealed) < 1 + _NONCE + 16:
            raise InternalError("stored value has an unknown format")
        try:
            return self._aead.decrypt(sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], context)
        except InvalidTag:
            raise InternalError("stored value failed its integrity check") from None


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, created (readable by its owner only) when absent."""
    create_secret_file(path, AESGCM.generate_key(bit_length=256))
    key = path.read_bytes()
    if len(key) != KEY_LENGTH:
        raise ConfigurationError(f"{path} does not hold a {KEY_LENGTH}-byte key")
    return key
