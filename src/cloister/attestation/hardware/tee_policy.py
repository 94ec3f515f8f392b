"""Which verified evidence is acceptable: platforms, measurements, signers, TCB, debug, simulation, age.

Verifiers answer "is this genuine?"; a :class:`TeePolicy` answers "is this what we agreed to
trust?". It lists every reason it refuses instead of stopping at the first, so an operator
fixes a policy or a platform in one pass. The default is a production policy.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from cloister.attestation.hardware.claims import PLATFORMS, Claims, Platform, TCBStatus, require_aware
from cloister.config import TeePolicySettings
from cloister.errors import ConfigurationError

__all__ = ["SIGNER_MEASUREMENTS", "TeePolicy", "Verdict", "load_tee_policy"]

SIGNER_MEASUREMENTS: Mapping[str, str] = {"sgx": "mr_signer", "sev-snp": "id_key_digest", "sim": "mr_signer"}
"""The measurement that names who signed the workload, per platform."""

_RATED: frozenset[str] = frozenset({"sgx", "tdx"})
"""Platforms whose vendor rates the TCB (Intel's TCB info); the others are bounded by TCB levels."""


CLOCK_SKEW = dt.timedelta(minutes=5)
"""How far in the future evidence may say it was made (the TEE's clock against the verifier's);
beyond that it is refused, whatever the age bound."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class TeePolicy:
    """What evidence to accept; the defaults refuse debug, simulated and not up-to-date evidence.

    Attributes:
        platforms: the accepted kinds of TEE.
        measurements: platform -> measurement name -> accepted values; each name listed must match.
        signers: platform -> accepted workload signers (see :data:`SIGNER_MEASUREMENTS`).
        min_tcb_status: the lowest rating accepted where the vendor rates the TCB (SGX, TDX).
        min_tcb_levels: platform -> TCB component -> lowest version accepted (SEV-SNP).
        tolerated_advisories: advisories that do not refuse evidence; any other one does.
        allow_debug: accept a TEE in debug mode (its memory is open to the host).
        allow_simulated: accept the ``sim`` backend's evidence (no hardware root of trust).
        max_evidence_age: oldest acceptable evidence among those that say when they were made.
    """

    platforms: frozenset[Platform] = frozenset({"sgx", "tdx", "sev-snp", "nitro"})
    measurements: Mapping[str, Mapping[str, frozenset[bytes]]] = field(default_factory=dict)
    signers: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    min_tcb_status: TCBStatus = TCBStatus.UP_TO_DATE
    min_tcb_levels: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    tolerated_advisories: frozenset[str] = frozenset()
    allow_debug: bool = False
    allow_simulated: bool = False
    max_evidence_age: dt.timedelta | None = None

    @classmethod
    def from_settings(cls, settings: TeePolicySettings) -> TeePolicy:
        """The policy a ``[tee_policy]`` section describes.

        Raises:
            ConfigurationError: a value that parses but means nothing (an unknown status or platform, bad hex).
        """
        try:
            for platform in [*settings.measurements, *settings.signers, *settings.min_tcb_levels]:
                if platform not in PLATFORMS:
                    raise ValueError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
            return cls(
                platforms=frozenset(settings.platforms),
                measurements={
                    platform: {name: frozenset(_hex(v) for v in values) for name, values in by_name.items()}
                    for platform, by_name in settings.measurements.items()
                },
                signers={platform: frozenset(_hex(v) for v in values) for platform, values in settings.signers.items()},
                min_tcb_status=TCBStatus.parse(settings.min_tcb_status),
                min_tcb_levels={p: dict(levels) for p, levels in settings.min_tcb_levels.items()},
                tolerated_advisories=frozenset(settings.tolerated_advisories),
                allow_debug=settings.allow_debug,
                allow_simulated=settings.allow_simulated,
                max_evidence_age=(
                    None
                    if settings.max_evidence_age_seconds is None
                    else dt.timedelta(seconds=settings.max_evidence_age_seconds)
                ),
            )
        except (ValueError, OverflowError) as exc:  # OverflowError: an age beyond what a timedelta holds
            raise ConfigurationError(f"tee_policy: {exc}") from None

    def evaluate(self, claims: Claims, at: dt.datetime) -> Verdict:
        """Whether ``claims`` are acceptable at ``at``, with every reason they are not."""
        at = require_aware(at)
        reasons: list[str] = []
        if claims.platform not in self.platforms:
            reasons.append(
                f"platform {claims.platform} is not accepted (accepted: {', '.join(sorted(self.platforms))})"
            )
        if claims.simulated and not self.allow_simulated:
            reasons.append("the evidence is simulated (no hardware root of trust) and the policy refuses that")
        if claims.debug and not self.allow_debug:
            reasons.append("the TEE runs in debug mode (its memory is open to the host) and the policy refuses that")
        if not claims.not_before <= at <= claims.not_after:
            reasons.append(
                f"the evidence is valid from {claims.not_before.isoformat()} to {claims.not_after.isoformat()}, "
                f"not at {at.isoformat()}"
            )
        if claims.issued_at is not None and claims.issued_at - at > CLOCK_SKEW:
            reasons.append(f"the evidence says it was made at {claims.issued_at.isoformat()}, after {at.isoformat()}")
        if self.max_evidence_age is not None and claims.issued_at is not None:
            age = at - claims.issued_at
            if age > self.max_evidence_age:
                reasons.append(f"the evidence is {age} old, older than {self.max_evidence_age}")
        reasons += self._tcb(claims)
        reasons += self._identity(claims)
        return Verdict(not reasons, tuple(reasons))

    def _tcb(self, claims: Claims) -> list[str]:
        reasons = []
        if claims.platform in _RATED and claims.tcb_status < self.min_tcb_status:
            reasons.append(f"TCB status {claims.tcb_status.label} is below {self.min_tcb_status.label}")
        untolerated = [a for a in claims.advisories if a not in self.tolerated_advisories]
        if untolerated:
            reasons.append(f"advisories not tolerated: {', '.join(untolerated)}")
        for component, lowest in self.min_tcb_levels.get(claims.platform, {}).items():
            level = claims.tcb_levels.get(component)
            if level is None:
                reasons.append(f"the evidence states no TCB level {component!r}")
            elif level < lowest:
                reasons.append(f"TCB level {component} is {level}, below {lowest}")
        return reasons

    def _identity(self, claims: Claims) -> list[str]:
        reasons = []
        for name, accepted in self.measurements.get(claims.platform, {}).items():
            value = claims.measurements.get(name)
            if value is None:
                reasons.append(f"the evidence has no measurement {name!r}")
            elif value not in accepted:
                reasons.append(f"{name} {value.hex()} is not an accepted value")
        signers = self.signers.get(claims.platform)
        if signers is not None:
            signer_name = SIGNER_MEASUREMENTS.get(claims.platform)
            signer = claims.measurements.get(signer_name) if signer_name else None
            if signer is None:
                reasons.append(f"{claims.platform} evidence names no signer, and the policy lists accepted signers")
            elif signer not in signers:
                reasons.append(f"signer ({signer_name}) {signer.hex()} is not accepted")
        return reasons


def load_tee_policy(path: Path) -> TeePolicy:
    """The policy in a TOML file: a ``[tee_policy]`` table (as in Cloister's config file) or the same keys at the top.

    Raises:
        ConfigurationError: the file cannot be read or its content is not a policy.
    """
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read the TEE policy {path}: {exc}") from None
    section = document.get("tee_policy", document)
    try:
        settings = TeePolicySettings.model_validate(section)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"TEE policy {path}: {problems}") from None
    return TeePolicy.from_settings(settings)


def _hex(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{value!r} is not hex") from None
