"""Hardware TEE backends: evidence from TDX and SEV-SNP (configfs-tsm), SGX (Gramine) and Nitro (NSM).

Each takes 64 bytes of report data, asks its TEE for evidence over them, and checks that the
evidence carries exactly those bytes before handing it on. None of them verifies evidence;
that is the attestation service's job. May import ``cloister.attestation.backends``,
``cloister.errors`` and ``cloister.config``.
"""

from __future__ import annotations

from pathlib import Path

from cloister.attestation.backends import TEEBackend, check_backend
from cloister.attestation.producers.configfs_tsm import TSM_REPORT_ROOT, TSMBackend
from cloister.attestation.producers.gramine import GRAMINE_ATTESTATION_ROOT, GramineBackend
from cloister.attestation.producers.nsm import NSM_DEVICE, NitroBackend

__all__ = ["GramineBackend", "NitroBackend", "TSMBackend", "open_hardware_backend"]


def open_hardware_backend(name: str, devices_root: Path = Path("/")) -> TEEBackend:
    """The hardware backend ``name``, once its interface is there and answers as expected.

    ``devices_root`` stands for ``/`` (tests point it at a stand-in directory).

    Raises:
        ConfigurationError: the backend is unknown, its interface is missing, or it answers for
            another TEE (``tee_backend = "tdx"`` on an SEV-SNP VM, Gramine without DCAP).
    """
    check_backend(name, devices_root)
    if name in ("tdx", "sev-snp"):
        tsm = TSMBackend(name, devices_root / TSM_REPORT_ROOT.relative_to("/"))
        tsm.probe()
        return tsm
    if name == "sgx":
        gramine = GramineBackend(devices_root / GRAMINE_ATTESTATION_ROOT.relative_to("/"))
        gramine.probe()
        return gramine
    if name == "nitro":
        return NitroBackend(devices_root / NSM_DEVICE.relative_to("/"))
    raise ValueError(f"{name!r} is not a hardware backend")
