"""TEE backends: produce evidence that binds 64 bytes of report data to the running service.

The backend is chosen in the configuration (``tee_backend``). ``sim`` runs anywhere and says
so; the hardware backends check for their device and stop start-up with what is missing,
since this build does not yet drive them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cloister.config import TEE_BACKENDS
from cloister.errors import ConfigurationError

SIMULATED_NOTICE = "TEE backend 'sim': the hardware root of trust is SIMULATED; do not use with real secrets"


@dataclass(frozen=True)
class Evidence:
    """What a backend produced: a quote body and the backend's signature over it."""

    tee_backend: str
    quote: bytes
    signature: bytes


class TEEBackend(abc.ABC):
    name: str
    simulated: bool

    @abc.abstractmethod
    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence that this service, as measured now, holds the key behind ``report_data``."""


@dataclass(frozen=True)
class _Hardware:
    description: str
    devices: tuple[str, ...]


_HARDWARE = {
    "sgx": _Hardware("Intel SGX (via a library OS)", ("/dev/sgx_enclave", "/dev/sgx/enclave")),
    "tdx": _Hardware("an Intel TDX confidential VM", ("/dev/tdx_guest",)),
    "sev-snp": _Hardware("an AMD SEV-SNP confidential VM", ("/dev/sev-guest",)),
}
BACKENDS = TEE_BACKENDS
"""The names the configuration accepts: ``sim`` and each of ``_HARDWARE``."""


def check_backend(name: str, devices_root: Path = Path("/")) -> None:
    """Raise ``ConfigurationError`` saying what is missing unless ``name`` can run here."""
    if name == "sim":
        return
    hardware = _HARDWARE.get(name)
    if hardware is None:
        raise ConfigurationError(f"unknown TEE backend {name!r}; available: {', '.join(BACKENDS)}")
    present = [d for d in hardware.devices if (devices_root / d.lstrip("/")).exists()]
    if not present:
        raise ConfigurationError(
            f"TEE backend {name!r} needs {hardware.description}, but no device was found "
            f'({_either(hardware.devices)} is missing); use tee_backend = "sim" to develop without it'
        )
    raise ConfigurationError(
        f"TEE backend {name!r}: {present[0]} is present, but this version of Cloister cannot produce "
        f'{hardware.description} evidence yet; use tee_backend = "sim"'
    )


def _either(items: Iterable[str]) -> str:
    return " or ".join(items)
