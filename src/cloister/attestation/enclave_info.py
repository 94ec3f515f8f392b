"""``enclave_info.toml``: each service's expected platform and measurements, signed by auditors (§14.5).

Teaclave's format, one table per identity with ``mr_enclave`` and ``mr_signer``, is the ``sim``
format and stays byte for byte what it was. An identity on TEE hardware adds ``platform``
(``sgx``, ``tdx``, ``sev-snp`` or ``nitro``) and carries the platform's measurements as the
attestation service maps them into the report's quote body. The auditors sign the file's exact
bytes, so their signatures cover the platform as much as the measurements.

In a confidential VM or a Nitro enclave image, every service of the image has the same
measurement, so several identities may list the same values; the name the attestation service
certified (``cloisterService`` in the report) then says which of them a peer is, and a name is
recognised only where the file lists it with the peer's own platform and measurements.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloister.errors import AttestationError

if TYPE_CHECKING:
    from cloister.attestation.report import VerifiedReport

SIM_PLATFORM = "sim"
HARDWARE_PLATFORMS = ("sgx", "tdx", "sev-snp", "nitro")
"""The platforms an identity may name; without ``platform`` an identity is a ``sim`` one."""
UNLABELLED_PLATFORMS = frozenset({SIM_PLATFORM, "sgx-epid", "sgx-dcap"})
"""Report platforms a ``sim`` (platform-less) identity matches: Cloister's simulated reports, and
reports from signers that name no platform (Intel's IAS, Teaclave's DCAP service), exactly as
Teaclave matched them. Cloister's attestation service names the platform in every report."""

_HEX32 = re.compile(r"[0-9a-fA-F]{64}")
_KEYS = frozenset({"mr_enclave", "mr_signer", "platform"})


@dataclass(frozen=True)
class EnclaveIdentity:
    name: str
    mr_enclave: bytes
    mr_signer: bytes
    platform: str = SIM_PLATFORM
    """``sim`` (written without a ``platform`` key) or one of :data:`HARDWARE_PLATFORMS`."""

    def matches(self, platform: str, mr_enclave: bytes, mr_signer: bytes) -> bool:
        """Whether a report of ``platform`` with these measurements is this identity's."""
        unlabelled = self.platform == SIM_PLATFORM
        same_platform = platform in UNLABELLED_PLATFORMS if unlabelled else platform == self.platform
        return same_platform and self.mr_enclave == mr_enclave and self.mr_signer == mr_signer


class EnclaveInfo:
    """The parsed identity file; look identities up by name or by measurement."""

    def __init__(self, identities: Iterable[EnclaveIdentity], raw: bytes) -> None:
        self._by_name: dict[str, EnclaveIdentity] = {}
        for identity in identities:
            if identity.name in self._by_name:
                raise AttestationError(f"enclave_info.toml lists {identity.name} twice")
            self._by_name[identity.name] = identity
        self.raw = raw

    @classmethod
    def parse(cls, raw: bytes) -> EnclaveInfo:
        """Parse and check every entry: nothing but tables of 32-byte hex measurements and a known platform.

        Raises:
            AttestationError: the file is not TOML, or an entry is malformed (naming it).
        """
        try:
            data = tomllib.loads(raw.decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AttestationError(f"enclave_info.toml is malformed: {exc}") from None
        return cls([_identity(name, table) for name, table in data.items()], raw)

    @staticmethod
    def render(identities: Iterable[EnclaveIdentity]) -> bytes:
        lines = []
        for identity in identities:
            lines.append(f"[{identity.name}]")
            if identity.platform != SIM_PLATFORM:
                lines.append(f'platform = "{identity.platform}"')
            lines += [
                f'mr_enclave = "{identity.mr_enclave.hex()}"',
                f'mr_signer = "{identity.mr_signer.hex()}"',
                "",
            ]
        return "\n".join(lines).encode()

    def identities(self) -> list[EnclaveIdentity]:
        return list(self._by_name.values())

    def identify(self, report: VerifiedReport, names: Iterable[str]) -> EnclaveIdentity:
        """The identity among ``names`` that a verified report proves.

        The report's platform and measurements must be listed here. When the report names the
        service it was certified as, that name is the identity, and only if this file lists it
        with those very platform and measurements; a report that names none is recognised only
        when exactly one identity has them (Teaclave's reports, which predate the name).

        Raises:
            AttestationError: the peer is none of ``names``, or cannot be told apart.
        """
        quote = report.quote
        return self.recognise(report.tee_backend, quote.mr_enclave, quote.mr_signer, report.service, names)

    def recognise(
        self, platform: str, mr_enclave: bytes, mr_signer: bytes, claimed: str | None, names: Iterable[str]
    ) -> EnclaveIdentity:
        """:meth:`identify` on the report's parts: its platform, measurements and certified name.

        Raises:
            AttestationError: the peer is none of ``names``, or cannot be told apart.
        """
        names = list(names)
        expected = " or ".join(names)
        listed = [i for i in self._by_name.values() if i.matches(platform, mr_enclave, mr_signer)]
        if not listed:
            elsewhere = sorted(
                {i.platform for i in self._by_name.values() if i.mr_enclave == mr_enclave and i.mr_signer == mr_signer}
            )
            if elsewhere:
                raise AttestationError(
                    f"peer's {platform} measurement is not in enclave_info.toml: it is listed for "
                    f"{', '.join(elsewhere)} only (expected {expected})"
                )
            raise AttestationError(f"peer's measurement is not in enclave_info.toml (expected {expected})")
        if claimed is not None:
            identity = next((i for i in listed if i.name == claimed), None)
            if identity is None:
                raise AttestationError(
                    f"peer was certified as {claimed}, but enclave_info.toml lists its {platform} measurement "
                    f"for {', '.join(i.name for i in listed)} only (expected {expected})"
                )
        elif len(listed) == 1:
            identity = listed[0]
        else:
            raise AttestationError(
                f"peer's measurement is listed for {', '.join(i.name for i in listed)}, and its report names "
                f"none of them (expected {expected})"
            )
        if identity.name not in names:
            raise AttestationError(f"peer is {identity.name}, expected {expected}")
        return identity


def _identity(name: str, table: Any) -> EnclaveIdentity:
    where = f"enclave_info.toml [{name}]"
    if not isinstance(table, dict):
        raise AttestationError(f"enclave_info.toml is malformed: {name} is not a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise AttestationError(f"{where}: unknown key {unknown[0]!r}; an identity has {', '.join(sorted(_KEYS))}")
    measurements = []
    for key in ("mr_enclave", "mr_signer"):
        value = table.get(key)
        if not isinstance(value, str) or not _HEX32.fullmatch(value):
            raise AttestationError(f"{where}: {key} must be 64 hex digits (32 bytes)")
        measurements.append(bytes.fromhex(value))
    platform = table.get("platform", SIM_PLATFORM)
    if "platform" in table and platform not in HARDWARE_PLATFORMS:
        raise AttestationError(
            f"{where}: platform must be one of {', '.join(HARDWARE_PLATFORMS)}, not {platform!r} "
            "(a sim identity has no platform key)"
        )
    return EnclaveIdentity(name, measurements[0], measurements[1], platform)


def sign_enclave_info(raw: bytes, key: rsa.RSAPrivateKey) -> bytes:
    return key.sign(raw, padding.PKCS1v15(), hashes.SHA256())


def verify_auditor_signatures(
    raw: bytes,
    signatures: Sequence[bytes],
    auditor_keys: Sequence[tuple[str, rsa.RSAPublicKey]],
    required: int,
) -> list[str]:
    """The auditors who signed ``raw``; every signature must verify under some auditor's key.

    Raises:
        AttestationError: a signature is wrong, or fewer than ``required`` auditors signed.
    """
    signers: list[str] = []
    for index, signature in enumerate(signatures):
        for name, key in auditor_keys:
            try:
                key.verify(signature, raw, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                continue
            if name not in signers:
                signers.append(name)
            break
        else:
            raise AttestationError(f"auditor signature {index + 1} over enclave_info.toml does not verify")
    if len(signers) < required:
        raise AttestationError(f"enclave_info.toml is signed by {len(signers)} auditor(s), {required} required")
    return signers
