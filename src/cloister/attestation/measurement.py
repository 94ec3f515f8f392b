"""What the ``sim`` backend measures: the code a service runs, and the service's name.

A service runs the whole installed package except the other services' packages, so a change to
the storage service's code changes storage's ``mr_enclave`` and nobody else's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cloister
from cloister.config import SERVICES

PACKAGE_ROOT = Path(cloister.__file__).resolve().parent


def _runs(relative: Path, service: str) -> bool:
    parts = relative.parts
    return not (len(parts) > 2 and parts[0] == "services" and parts[1] in SERVICES and parts[1] != service)


def code_digests(services: tuple[str, ...], root: Path = PACKAGE_ROOT) -> dict[str, bytes]:
    """For each service, SHA-256 over the path and bytes of every Python file it runs (each file read once)."""
    digests = {service: hashlib.sha256() for service in services}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        readers = [digest for service, digest in digests.items() if _runs(relative, service)]
        if not readers:
            continue
        name = relative.as_posix().encode()
        content = path.read_bytes()
        for digest in readers:
            digest.update(len(name).to_bytes(4, "little") + name)
            digest.update(len(content).to_bytes(8, "little") + content)
    return {service: digest.digest() for service, digest in digests.items()}


def enclave_name(service: str) -> str:
    """Teaclave's identity name for a service, e.g. ``teaclave_frontend_service``."""
    return f"teaclave_{service}_service"


def mr_enclaves(services: tuple[str, ...], root: Path = PACKAGE_ROOT) -> dict[str, bytes]:
    """Each service's ``mr_enclave``: its name and the digest of its code."""
    measured = {}
    for service, code in code_digests(services, root).items():
        digest = hashlib.sha256(b"cloister-sim-mr-enclave\0")
        digest.update(enclave_name(service).encode() + b"\0")
        digest.update(code)
        measured[service] = digest.digest()
    return measured


def mr_enclave(service: str, root: Path = PACKAGE_ROOT) -> bytes:
    return mr_enclaves((service,), root)[service]


def mr_signer(signing_public_key_der: bytes) -> bytes:
    return hashlib.sha256(signing_public_key_der).digest()
