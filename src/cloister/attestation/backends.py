"""TEE backends: produce evidence that binds 64 bytes of report data to the running service.

The backend is chosen in the configuration (``tee_backend``). ``sim`` runs anywhere and says
so. The hardware backends (``cloister.attestation.producers``) reach their TEE through the
interface its guest kernel or library OS offers, and :func:`check_backend` stops start-up with
what is missing when that interface is not there.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from cloister.config import TEE_BACKENDS
from cloister.errors import ConfigurationError

SIMULATED_NOTICE = "TEE backend 'sim': the hardware root of trust is SIMULATED; do not use with real secrets"


@dataclass(frozen=True)
class Evidence:
    """What a backend produced.

    ``sim``: a quote body and the simulated quoting key's signature over it. Hardware: the raw
    evidence in ``quote`` (an SGX or TDX quote, an SEV-SNP report, a Nitro attestation document),
    whose signature is inside it, so ``signature`` is empty.
    """

    tee_backend: str
    quote: bytes
    signature: bytes
    certificates: bytes = b""
    """SEV-SNP: the certificate table the host supplied (VCEK, ASK, ARK), if any; else empty."""
    collateral: bytes = b""
    """SGX and TDX: Intel's PCS collateral for the quote (dcap-qvl's ``QuoteCollateralV3`` JSON),
    which the attestation service needs to verify it; empty for ``sim``, SEV-SNP and Nitro, and
    for a backend that does not fetch it (the attestation service then refuses the quote)."""


class TEEBackend(abc.ABC):
    name: str
    simulated: bool

    @abc.abstractmethod
    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence that this service, as measured now, holds the key behind ``report_data``.

        It may block: on the TEE, and for a hardware backend on fetching what verifying the
        evidence takes (Intel's collateral, a VCEK), so async code calls it in a thread.
        """

    def forget_endorsements(self) -> None:
        """The attestation service refused evidence: drop any cached collateral or VCEK, so the next is fetched."""
        return  # nothing cached by default


@dataclass(frozen=True)
class _Hardware:
    description: str
    interface: str
    """The path whose presence means the backend can run here."""
    remedy: str


_TSM_ROOT = "/sys/kernel/config/tsm/report"
_HARDWARE = {
    "sgx": _Hardware(
        "Intel SGX under the Gramine library OS",
        "/dev/attestation/quote",
        'run the service with gramine-sgx and sgx.remote_attestation = "dcap" (see docs/tee.md)',
    ),
    "tdx": _Hardware(
        "an Intel TDX confidential VM",
        _TSM_ROOT,
        "configfs-tsm needs Linux 6.7 or later with the tdx_guest driver and configfs mounted on /sys/kernel/config",
    ),
    "sev-snp": _Hardware(
        "an AMD SEV-SNP confidential VM",
        _TSM_ROOT,
        "configfs-tsm needs Linux 6.7 or later with the sev_guest driver and configfs mounted on /sys/kernel/config",
    ),
    "nitro": _Hardware(
        "an AWS Nitro Enclave",
        "/dev/nsm",
        "the Nitro Secure Module device exists only inside an enclave (Linux 6.8 or later, or the nsm driver)",
    ),
}
BACKENDS = TEE_BACKENDS
"""The names the configuration accepts: ``sim`` and each of ``_HARDWARE``."""


def check_backend(name: str, devices_root: Path = Path("/")) -> None:
    """Raise ``ConfigurationError`` saying what is missing unless ``name`` can run here.

    ``devices_root`` stands for ``/``: the interface of each backend is looked for under it.
    """
    if name == "sim":
        return
    hardware = _HARDWARE.get(name)
    if hardware is None:
        raise ConfigurationError(f"unknown TEE backend {name!r}; available: {', '.join(BACKENDS)}")
    if not (devices_root / hardware.interface.lstrip("/")).exists():
        raise ConfigurationError(
            f"TEE backend {name!r} needs {hardware.description}, but {hardware.interface} is missing "
            f'({hardware.remedy}); use tee_backend = "sim" to develop without it'
        )
