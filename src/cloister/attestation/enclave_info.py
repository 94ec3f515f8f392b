"""``enclave_info.toml``: each service's expected measurements, signed by auditors (§14.5)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloister.errors import AttestationError


@dataclass(frozen=True)
class EnclaveIdentity:
    name: str
    mr_enclave: bytes
    mr_signer: bytes


class EnclaveInfo:
    """The parsed identity file; look identities up by name or by measurement."""

    def __init__(self, identities: Iterable[EnclaveIdentity], raw: bytes) -> None:
        self._by_name = {i.name: i for i in identities}
        self.raw = raw

    @classmethod
    def parse(cls, raw: bytes) -> EnclaveInfo:
        try:
            data = tomllib.loads(raw.decode())
            identities = [
                EnclaveIdentity(name, bytes.fromhex(t["mr_enclave"]), bytes.fromhex(t["mr_signer"]))
                for name, t in data.items()
            ]
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise AttestationError(f"enclave_info.toml is malformed: {exc}") from None
        return cls(identities, raw)

    @staticmethod
    def render(identities: Iterable[EnclaveIdentity]) -> bytes:
        lines = []
        for identity in identities:
            lines += [
                f"[{identity.name}]",
                f'mr_enclave = "{identity.mr_enclave.hex()}"',
                f'mr_signer = "{identity.mr_signer.hex()}"',
                "",
            ]
        return "\n".join(lines).encode()

    def identities(self) -> list[EnclaveIdentity]:
        return list(self._by_name.values())

    def match(self, mr_enclave: bytes, mr_signer: bytes, names: Iterable[str]) -> EnclaveIdentity:
        """The identity among ``names`` with these measurements.

        Raises:
            AttestationError: none of ``names`` has them.
        """
        names = list(names)
        for name in names:
            identity = self._by_name.get(name)
            if identity and identity.mr_enclave == mr_enclave and identity.mr_signer == mr_signer:
                return identity
        for identity in self._by_name.values():
            if identity.mr_enclave == mr_enclave and identity.mr_signer == mr_signer:
                raise AttestationError(f"peer is {identity.name}, expected {' or '.join(names)}")
        raise AttestationError(f"peer's measurement is not in enclave_info.toml (expected {' or '.join(names)})")


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
