"""``builtin-rsa-sign`` (reference §12.9): sign the ``data`` argument with an RSA key given as input.

RSASSA-PKCS1-v1_5 with SHA-256 over the UTF-8 bytes of ``data``, returned as standard base64. The key
is DER (PKCS#1 ``RSAPrivateKey`` as Teaclave reads it, or PKCS#8) and held to ring's limits: a 2048
to 4096-bit modulus and a public exponent of at least 65537.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._arguments import string

NAME = "builtin-rsa-sign"
_INVALID_KEY = "invalid rsa key"
_MIN_BITS, _MAX_BITS = 2048, 4096
_MIN_EXPONENT = 65537


def load_signing_key(der: bytes) -> rsa.RSAPrivateKey:
    """The RSA private key in ``der``.

    Raises:
        FunctionError: ``invalid rsa key`` for anything else, or a key ring would refuse.
    """
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise FunctionError(_INVALID_KEY) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise FunctionError(_INVALID_KEY)
    if not _MIN_BITS <= key.key_size <= _MAX_BITS or key.public_key().public_numbers().e < _MIN_EXPONENT:
        raise FunctionError(_INVALID_KEY)
    return key


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    data = string(arguments, "data")
    with runtime.open_input("rsa_key") as stream:
        key = load_signing_key(stream.read())
    signature = key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")
