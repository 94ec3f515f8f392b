"""``builtin_online_decrypt`` (reference §12.6): AES-GCM-decrypt a base64 message given in the arguments.

Key, nonce and ciphertext‖tag arrive base64-encoded; the AAD is empty and only the first 12 nonce
bytes count. The name has underscores, as in Teaclave.
"""

from __future__ import annotations

import binascii
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._arguments import string

NAME = "builtin_online_decrypt"
_KEY_SIZES = {"aes128gcm": 16, "aes256gcm": 32}
_NONCE_SIZE = 12
_DECODE_ERROR = "base64 decoded error"
_DECRYPT_ERROR = "decryption error"


def _base64(text: str) -> bytes:
    """Standard-alphabet base64; like Rust's ``base64::decode`` the padding may be left out."""
    if "=" not in text:
        text += "=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise FunctionError(_DECODE_ERROR) from None


def decrypt(key: bytes, nonce: bytes, sealed: bytes, key_size: int) -> bytes:
    """The plaintext of ``sealed`` (ciphertext‖tag), or ``decryption error`` for any failure."""
    if len(key) != key_size or len(nonce) < _NONCE_SIZE:
        raise FunctionError(_DECRYPT_ERROR)
    try:
        return AESGCM(key).decrypt(nonce[:_NONCE_SIZE], sealed, None)
    except (InvalidTag, ValueError):
        raise FunctionError(_DECRYPT_ERROR) from None


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    key, nonce, sealed = (string(arguments, name) for name in ("key", "nonce", "encrypted_data"))
    key_size = _KEY_SIZES.get(string(arguments, "algorithm"))
    if key_size is None:
        raise FunctionError("Invalid algorithm")
    plaintext = decrypt(_base64(key), _base64(nonce), _base64(sealed), key_size)
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise FunctionError(_DECODE_ERROR) from None
