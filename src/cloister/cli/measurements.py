"""Hardware identities for ``enclave_info.toml``: from a file of raw platform measurements, or from evidence.

A peer on TEE hardware is recognised when the identity file lists the values its endorsed report
carries, and those are the platform's measurements as the attestation service maps them
(:func:`~cloister.attestation.hardware.evidence.quote_body_of`). Both ways here go through
that very function, on claims built from the file or verified from the evidence, so the
identity file cannot drift from what the attestation service endorses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloister.attestation.enclave_info import HARDWARE_PLATFORMS, EnclaveIdentity
from cloister.attestation.hardware.claims import Claims, Platform, TCBStatus
from cloister.attestation.hardware.evidence import quote_body_of
from cloister.attestation.measurement import enclave_name
from cloister.config import MEASURED
from cloister.errors import ConfigurationError

FIELDS: Mapping[str, Mapping[str, int]] = {
    "sgx": {"mr_enclave": 32, "mr_signer": 32},
    "tdx": {"mr_td": 48, "rtmr0": 48, "rtmr1": 48, "rtmr2": 48, "rtmr3": 48, "mr_seam": 48},
    "sev-snp": {"measurement": 48, "id_key_digest": 48},
    "nitro": {"pcr0": 48, "pcr1": 48, "pcr2": 48, "pcr8": 48},
}
"""Per platform, the raw measurements an identity is made of and their sizes in bytes, named as
``cloister attest --evidence`` prints them. Every one is required: the verifiers always report
them (TDX's MRSEAM; SNP's ID key digest, zeros without an ID block; Nitro's PCR8, zeros for an
unsigned image), and leaving one out would map to other values than the hardware's."""

_HEX = re.compile(r"[0-9a-fA-F]+")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class MeasuredImage:
    """One measured image (an SGX enclave, a confidential VM image, a Nitro enclave image) and the services it runs."""

    platform: str
    services: tuple[str, ...]
    measurements: Mapping[str, bytes]

    def identities(self) -> list[EnclaveIdentity]:
        """One identity per service, all with the image's platform and mapped measurements."""
        return identities_of(self.claims(), self.services)

    def claims(self) -> Claims:
        """Claims as a verifier of this image's evidence would state its measurements."""
        platform: Platform = self.platform  # type: ignore[assignment]  # checked in read_measurements
        return Claims(
            platform=platform,
            measurements=dict(self.measurements),
            report_data=bytes(64),
            tcb_status=TCBStatus.UNRATED,
            not_before=_EPOCH,
            not_after=_EPOCH,
            evidence_digest=bytes(32),
        )


def identities_of(claims: Claims, services: Iterable[str]) -> list[EnclaveIdentity]:
    """The identity of each of ``services`` running where ``claims`` were measured.

    Only the measurements count: the report data (any size, Nitro's ``user_data`` included) is
    set aside, as it binds one service's key, not the image.

    Raises:
        AttestationError: the claims lack a measurement the platform's rule needs.
        ConfigurationError: the claims are simulated.
    """
    if claims.platform not in HARDWARE_PLATFORMS or claims.simulated:
        raise ConfigurationError(f"{claims.platform} measurements make no hardware identity")
    body = quote_body_of(dataclasses.replace(claims, report_data=bytes(64)))
    return [EnclaveIdentity(enclave_name(s), body.mr_enclave, body.mr_signer, claims.platform) for s in services]


def read_measurements(path: Path, platform: str) -> list[MeasuredImage]:
    """The ``[[image]]`` tables of a measurements file, every one for ``platform``.

    ::

        [[image]]
        platform = "tdx"                 # optional; must be the deployment's
        services = ["frontend", "management"]
        mr_td = "..."                    # hex, as FIELDS lists for the platform

    Raises:
        ConfigurationError: the file is unreadable, or anything in it is unknown, missing,
            the wrong size, or names a service twice.
    """
    if platform not in HARDWARE_PLATFORMS:
        raise ConfigurationError(
            f"measurements are for TEE hardware ({', '.join(HARDWARE_PLATFORMS)}), not {platform!r}"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"measurements file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"measurements file {path} cannot be read: {exc}") from None
    unknown = sorted(set(data) - {"image"})
    if unknown:
        raise ConfigurationError(f"{path}: unknown key {unknown[0]!r}; the file holds [[image]] tables")
    tables = data.get("image")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigurationError(f"{path}: no [[image]] tables")
    images = [_image(table, platform, f"{path}: [[image]] {index + 1}") for index, table in enumerate(tables)]
    seen: set[str] = set()
    for image in images:
        twice = seen.intersection(image.services)
        if twice:
            raise ConfigurationError(f"{path}: {sorted(twice)[0]} is in two images; a service has one measurement")
        seen.update(image.services)
    return images


def _image(table: Mapping[str, Any], platform: str, where: str) -> MeasuredImage:
    fields = FIELDS[platform]
    named = table.get("platform", platform)
    if named != platform:
        raise ConfigurationError(f"{where}: platform {named!r}, but the deployment's TEE is {platform}")
    unknown = sorted(set(table) - {"platform", "services", *fields})
    if unknown:
        raise ConfigurationError(
            f"{where}: {unknown[0]!r} is not part of a {platform} identity; it takes services and {', '.join(fields)}"
        )
    services = table.get("services")
    if not isinstance(services, list) or not services or not all(isinstance(s, str) for s in services):
        raise ConfigurationError(f'{where}: services must list services, e.g. ["frontend", "management"]')
    for service in services:
        if service not in MEASURED:
            raise ConfigurationError(f"{where}: {service!r} is not a service; services: {', '.join(MEASURED)}")
    if len(set(services)) != len(services):
        raise ConfigurationError(f"{where}: services lists a service twice")
    measurements = {}
    for name, size in fields.items():
        value = table.get(name)
        if value is None:
            raise ConfigurationError(f"{where}: {name} is missing ({size} bytes as hex)")
        if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
            raise ConfigurationError(f"{where}: {name} must be {size} bytes as {2 * size} hex digits")
        measurements[name] = bytes.fromhex(value)
    return MeasuredImage(platform, tuple(services), measurements)


def merged(existing: Iterable[EnclaveIdentity], new: Iterable[EnclaveIdentity]) -> list[EnclaveIdentity]:
    """``existing`` with the identities of the same names replaced by ``new`` and the others added."""
    replacing = {identity.name: identity for identity in new}
    result = [replacing.pop(identity.name, identity) for identity in existing]
    return result + list(replacing.values())
