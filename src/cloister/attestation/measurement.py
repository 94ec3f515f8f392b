"""What the ``sim`` backend measures: the package's code and the service's name."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import cloister

_PACKAGE_ROOT = Path(cloister.__file__).resolve().parent


@functools.cache
def code_digest(root: Path = _PACKAGE_ROOT) -> bytes:
    """SHA-256 over every Python source file of the installed package, path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix().encode()
        content = path.read_bytes()
        digest.update(len(relative).to_bytes(4, "little") + relative)
        digest.update(len(content).to_bytes(8, "little") + content)
    return digest.digest()


def enclave_name(service: str) -> str:
    """Teaclave's identity name for a service, e.g. ``teaclave_frontend_service``."""
    return f"teaclave_{service}_service"


def mr_enclave(service: str, code: bytes | None = None) -> bytes:
    digest = hashlib.sha256(b"cloister-sim-mr-enclave\0")
    digest.update(enclave_name(service).encode() + b"\0")
    digest.update(code if code is not None else code_digest())
    return digest.digest()


def mr_signer(signing_public_key_der: bytes) -> bytes:
    return hashlib.sha256(signing_public_key_der).digest()
