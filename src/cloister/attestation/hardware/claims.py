"""What verified evidence says, in one shape for every kind of TEE.

Each verifier fills :class:`Claims` only after the evidence's signatures checked out, so a
policy (``tee_policy``) can decide on SGX, TDX, SEV-SNP, Nitro and simulated evidence alike.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Platform = Literal["sgx", "tdx", "sev-snp", "nitro", "sim"]
PLATFORMS: tuple[Platform, ...] = ("sgx", "tdx", "sev-snp", "nitro", "sim")


class TCBStatus(enum.IntEnum):
    """How current the platform's trusted computing base is, best first (higher is better).

    Intel rates SGX and TDX platforms in its TCB info; AMD and AWS publish no such rating, so
    their evidence is ``UNRATED`` and a policy bounds it by TCB versions instead.
    """

    UP_TO_DATE = 70
    SW_HARDENING_NEEDED = 60
    CONFIGURATION_NEEDED = 50
    CONFIGURATION_AND_SW_HARDENING_NEEDED = 40
    OUT_OF_DATE = 30
    OUT_OF_DATE_CONFIGURATION_NEEDED = 20
    REVOKED = 0
    UNRATED = -1

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def parse(cls, word: str) -> TCBStatus:
        """The status an engine or a policy file names: Intel's ``UpToDate``, ``OUT_OF_DATE``, ``up-to-date``.

        Raises:
            ValueError: not a status this knows.
        """
        key = word.replace("-", "").replace("_", "").replace(" ", "").lower()
        if key == "ok":  # dcap-qvl's and IAS's word for up to date
            return cls.UP_TO_DATE
        for status, label in _LABELS.items():
            if label.lower() == key:
                return status
        raise ValueError(f"unknown TCB status {word!r}; known: {', '.join(_LABELS.values())}")


_LABELS = {
    TCBStatus.UP_TO_DATE: "UpToDate",
    TCBStatus.SW_HARDENING_NEEDED: "SWHardeningNeeded",
    TCBStatus.CONFIGURATION_NEEDED: "ConfigurationNeeded",
    TCBStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED: "ConfigurationAndSWHardeningNeeded",
    TCBStatus.OUT_OF_DATE: "OutOfDate",
    TCBStatus.OUT_OF_DATE_CONFIGURATION_NEEDED: "OutOfDateConfigurationNeeded",
    TCBStatus.REVOKED: "Revoked",
    TCBStatus.UNRATED: "Unrated",
}


@dataclass(frozen=True)
class Claims:
    """Verified facts about one piece of evidence.

    Attributes:
        platform: which kind of TEE signed it.
        measurements: name -> value: ``mr_enclave``/``mr_signer`` (SGX), ``mr_td``, ``rtmr0``..``rtmr3``,
            ``mr_seam`` (TDX), ``measurement``/``host_data``/``id_key_digest`` (SEV-SNP), ``pcr0``.. (Nitro).
        report_data: the bytes the workload bound into the evidence (SGX/TDX/SNP report data,
            Nitro ``user_data``); empty when there are none.
        nonce: Nitro's nonce field; empty elsewhere.
        public_key: Nitro's public key field; empty elsewhere.
        tcb_status: the vendor's rating of the platform's TCB at the time of verification.
        tcb_levels: component -> security version, where the evidence states them (SEV-SNP's reported TCB).
        advisories: security advisories the vendor lists for this TCB (Intel-SA ids).
        debug: the TEE runs in debug mode, so its memory is open to the host.
        simulated: no hardware signed this (the ``sim`` backend).
        not_before: the evidence verifies from this time ...
        not_after: ... until this one (certificates, CRLs, TCB info: the soonest to expire).
        issued_at: when the evidence says it was made (Nitro), else None.
        evidence_digest: SHA-256 of the raw evidence.
        details: other facts worth showing (FMSPC, chip, module id), not used by policy.
    """

    platform: Platform
    measurements: Mapping[str, bytes]
    report_data: bytes
    tcb_status: TCBStatus
    not_before: dt.datetime
    not_after: dt.datetime
    evidence_digest: bytes
    advisories: tuple[str, ...] = ()
    debug: bool = False
    simulated: bool = False
    nonce: bytes = b""
    public_key: bytes = b""
    tcb_levels: Mapping[str, int] = field(default_factory=dict)
    issued_at: dt.datetime | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> list[str]:
        """Lines for a person: what the evidence proves."""
        platform = self.platform + ("  (SIMULATED: no hardware root of trust)" if self.simulated else "")
        lines = [
            f"platform           {platform}",
            f"TCB status         {self.tcb_status.label}",
            f"advisories         {', '.join(self.advisories) or 'none'}",
            f"debug              {'YES (memory open to the host)' if self.debug else 'no'}",
        ]
        lines += [f"{name:<18} {value.hex()}" for name, value in self.measurements.items()]
        if self.tcb_levels:
            levels = ", ".join(f"{name} {value}" for name, value in self.tcb_levels.items())
            lines.append(f"TCB levels         {levels}")
        lines.append(f"report data        {self.report_data.hex() or '(none)'}")
        if self.nonce:
            lines.append(f"nonce              {self.nonce.hex()}")
        if self.public_key:
            lines.append(f"public key         {self.public_key.hex()}")
        lines += [f"{name:<18} {value}" for name, value in self.details.items()]
        if self.issued_at is not None:
            lines.append(f"issued at          {_time(self.issued_at)}")
        lines += [
            f"valid              {_time(self.not_before)} to {_time(self.not_after)}",
            f"evidence sha256    {self.evidence_digest.hex()}",
        ]
        return lines


def evidence_digest(evidence: bytes) -> bytes:
    return hashlib.sha256(evidence).digest()


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def require_aware(at: dt.datetime) -> dt.datetime:
    """``at`` in UTC; a naive time is refused rather than guessed."""
    if at.tzinfo is None:
        raise ValueError("the verification time needs a time zone")
    return at.astimezone(dt.UTC)
