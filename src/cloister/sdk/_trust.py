"""What a client trusts and who it is: the deployment's root CA and identity file, and a login."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from cloister.attestation.deployment import Deployment
from cloister.attestation.enclave_info import EnclaveInfo
from cloister.attestation.report import AttestationPolicy
from cloister.attestation.verify import PeerVerifier
from cloister.config import Settings
from cloister.errors import ConfigurationError
from cloister.sdk._connection import DEFAULT_POLICY


@dataclass(frozen=True)
class Credentials:
    """A user's id and password; ``repr`` hides the password."""

    user_id: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Trust:
    """The attestation root CA and the signed ``enclave_info.toml`` every connection is checked against.

    Nothing is sent to a service before its attestation report verifies against both.
    """

    as_root_ca: x509.Certificate
    enclave_info: EnclaveInfo = field(repr=False)
    policy: AttestationPolicy = DEFAULT_POLICY

    @classmethod
    def from_files(cls, as_root_ca: str | Path, enclave_info: str | Path) -> Trust:
        """Read the root CA (PEM) and ``enclave_info.toml`` a deployment's operator published.

        Raises:
            ConfigurationError: a file is missing or does not parse.
        """
        try:
            root = x509.load_pem_x509_certificate(Path(as_root_ca).read_bytes())
            info = EnclaveInfo.parse(Path(enclave_info).read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"cannot read trust material: {exc.strerror}: {exc.filename}") from None
        except ValueError:
            raise ConfigurationError(f"{as_root_ca} is not a PEM certificate") from None
        return cls(root, info)

    @classmethod
    def from_state_dir(cls, path: str | Path) -> Trust:
        """The trust material of the local platform whose state is in ``path`` (``make run``'s)."""
        state_dir = Path(path).expanduser()
        deployment = Deployment(Settings(state_dir=state_dir).attestation_dir)
        if not deployment.as_root_ca_path.exists():
            raise ConfigurationError.not_started(state_dir)
        return cls.from_files(deployment.as_root_ca_path, deployment.enclave_info_path)

    def verifier(self) -> PeerVerifier:
        return PeerVerifier(self.as_root_ca, self.enclave_info, self.policy)
