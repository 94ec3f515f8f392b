"""Hardware TEE backends: evidence from TDX and SEV-SNP (configfs-tsm), SGX (Gramine) and Nitro (NSM).

Each takes 64 bytes of report data, asks its TEE for evidence over them, and checks that the
evidence carries exactly those bytes before handing it on; SGX and TDX quotes go with Intel's
collateral, SNP reports with their VCEK, fetched when the TEE does not supply them. None of them
verifies evidence; that is the attestation service's job. May import ``cloister.attestation.backends``,
``cloister.attestation.hardware`` (to read a fetched certificate), ``cloister.errors`` and ``cloister.config``.
"""

from __future__ import annotations

from pathlib import Path

from cloister.attestation.backends import TEEBackend, check_backend
from cloister.attestation.producers.amd_kds import AMDKeyDistribution
from cloister.attestation.producers.configfs_tsm import TSM_REPORT_ROOT, TSMBackend
from cloister.attestation.producers.gramine import GRAMINE_ATTESTATION_ROOT, GramineBackend
from cloister.attestation.producers.intel_collateral import IntelCollateral
from cloister.attestation.producers.nsm import NSM_DEVICE, NitroBackend
from cloister.attestation.producers.remote import EndorsementSources

__all__ = [
    "AMDKeyDistribution",
    "EndorsementSources",
    "GramineBackend",
    "IntelCollateral",
    "NitroBackend",
    "TSMBackend",
    "open_hardware_backend",
]


def open_hardware_backend(
    name: str, devices_root: Path = Path("/"), sources: EndorsementSources | None = None
) -> TEEBackend:
    """The hardware backend ``name``, once its interface is there and answers as expected.

    ``devices_root`` stands for ``/`` (tests point it at a stand-in directory). ``sources`` says
    where the backend fetches what verifying its evidence takes (Intel's collateral for ``sgx``
    and ``tdx``, a VCEK for ``sev-snp`` when the host supplies none); None fetches nothing.

    Raises:
        ConfigurationError: the backend is unknown, its interface is missing, it answers for
            another TEE (``tee_backend = "tdx"`` on an SEV-SNP VM, Gramine without DCAP), or a
            source's URL is neither https nor loopback http.
    """
    check_backend(name, devices_root)
    sources = sources or EndorsementSources()
    timeout = sources.timeout_seconds
    collateral = IntelCollateral(sources.pccs_url, timeout_seconds=timeout) if sources.pccs_url else None
    if name in ("tdx", "sev-snp"):
        vceks = AMDKeyDistribution(sources.amd_kds_url, timeout_seconds=timeout) if sources.amd_kds_url else None
        tsm = TSMBackend(
            name,
            devices_root / TSM_REPORT_ROOT.relative_to("/"),
            collateral=collateral if name == "tdx" else None,
            vceks=vceks if name == "sev-snp" else None,
        )
        tsm.probe()
        return tsm
    if name == "sgx":
        gramine = GramineBackend(devices_root / GRAMINE_ATTESTATION_ROOT.relative_to("/"), collateral=collateral)
        gramine.probe()
        return gramine
    if name == "nitro":
        return NitroBackend(devices_root / NSM_DEVICE.relative_to("/"))
    raise ValueError(f"{name!r} is not a hardware backend")
