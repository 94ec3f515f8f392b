"""A development deployment's trust material in ``<state_dir>/attestation``.

``provision`` creates, once, the attestation root CA and report-signing key (the part Intel's
IAS plays), the deployment CA that issues client certificates for mutual TLS, the platform
signing key (``mr_signer``) and a development auditor key; and, at every start, a freshly
measured and signed ``enclave_info.toml``. Clients need only ``as_root_ca.pem`` and
``enclave_info.toml``. Private keys are written readable by their owner only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo, sign_enclave_info
from cloister.attestation.measurement import enclave_name, mr_enclave, mr_signer
from cloister.errors import ConfigurationError

AS_ROOT_CA = "as_root_ca.pem"
ENCLAVE_INFO = "enclave_info.toml"
_AS_ROOT_KEY = "as_root_ca.key"
_REPORT_SIGNER = "report_signer.pem"
_REPORT_SIGNER_KEY = "report_signer.key"
_DEPLOYMENT_CA = "deployment_ca.pem"
_DEPLOYMENT_CA_KEY = "deployment_ca.key"
_PLATFORM_SIGNING_KEY = "platform_signing.key"
_AUDITOR_DIR = "auditors"
_DEV_AUDITOR = "dev"


@dataclass(frozen=True)
class Deployment:
    """Paths of one deployment's trust material; load what each role needs from here."""

    directory: Path

    @property
    def as_root_ca_path(self) -> Path:
        return self.directory / AS_ROOT_CA

    @property
    def enclave_info_path(self) -> Path:
        return self.directory / ENCLAVE_INFO

    def as_root_ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self._read(AS_ROOT_CA))

    def report_signer(self) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = serialization.load_pem_private_key(self._read(_REPORT_SIGNER_KEY), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key, x509.load_pem_x509_certificate(self._read(_REPORT_SIGNER))

    def deployment_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = serialization.load_pem_private_key(self._read(_DEPLOYMENT_CA_KEY), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(self._read(_DEPLOYMENT_CA)), key

    def deployment_ca_pem(self) -> bytes:
        return self._read(_DEPLOYMENT_CA)

    def platform_signing_public_der(self) -> bytes:
        key = serialization.load_pem_private_key(self._read(_PLATFORM_SIGNING_KEY), None)
        return key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def enclave_info(self) -> EnclaveInfo:
        return EnclaveInfo.parse(self._read(ENCLAVE_INFO))

    def auditor_public_keys(self) -> list[rsa.RSAPublicKey]:
        keys = []
        for path in sorted((self.directory / _AUDITOR_DIR).glob("*.public.pem")):
            key = serialization.load_pem_public_key(path.read_bytes())
            if isinstance(key, rsa.RSAPublicKey):
                keys.append(key)
        return keys

    def auditor_signatures(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted((self.directory / _AUDITOR_DIR).glob("*.sign.sha256"))]

    def _read(self, name: str) -> bytes:
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            raise ConfigurationError(
                f"{self.directory / name} is missing: start the platform with 'cloister up' to create it"
            ) from None


def provision(directory: Path, services: tuple[str, ...], now: dt.datetime | None = None) -> Deployment:
    """Create what is missing and re-measure and re-sign ``enclave_info.toml``."""
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    (directory / _AUDITOR_DIR).mkdir(exist_ok=True)
    deployment = Deployment(directory)

    if not (directory / _AS_ROOT_KEY).exists():
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        root = _ca_certificate("Cloister Simulated Attestation Root CA", root_key, now, years=10)
        signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signer = _issue(
            "Cloister Simulated Attestation Report Signing", signer_key.public_key(), root, root_key, now, years=5
        )
        _write_key(directory / _AS_ROOT_KEY, root_key)
        _write_key(directory / _REPORT_SIGNER_KEY, signer_key)
        (directory / _REPORT_SIGNER).write_bytes(signer.public_bytes(serialization.Encoding.PEM))
        (directory / AS_ROOT_CA).write_bytes(root.public_bytes(serialization.Encoding.PEM))
    if not (directory / _DEPLOYMENT_CA_KEY).exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _ca_certificate("Cloister Deployment CA", ca_key, now, years=10)
        _write_key(directory / _DEPLOYMENT_CA_KEY, ca_key)
        (directory / _DEPLOYMENT_CA).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    if not (directory / _PLATFORM_SIGNING_KEY).exists():
        _write_key(directory / _PLATFORM_SIGNING_KEY, ec.generate_private_key(ec.SECP256R1()))
    auditor_key_path = directory / _AUDITOR_DIR / f"{_DEV_AUDITOR}.key"
    if not auditor_key_path.exists():
        auditor_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        _write_key(auditor_key_path, auditor_key)
        (directory / _AUDITOR_DIR / f"{_DEV_AUDITOR}.public.pem").write_bytes(
            auditor_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
            )
        )

    signer_id = mr_signer(deployment.platform_signing_public_der())
    raw = EnclaveInfo.render(EnclaveIdentity(enclave_name(s), mr_enclave(s), signer_id) for s in services)
    auditor_key = serialization.load_pem_private_key(auditor_key_path.read_bytes(), None)
    assert isinstance(auditor_key, rsa.RSAPrivateKey)
    _atomic_write(directory / ENCLAVE_INFO, raw)
    _atomic_write(directory / _AUDITOR_DIR / f"{_DEV_AUDITOR}.sign.sha256", sign_enclave_info(raw, auditor_key))
    return deployment


def _ca_certificate(name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, now: dt.datetime, years: int):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )


def _issue(name: str, public_key, issuer: x509.Certificate, issuer_key, now: dt.datetime, years: int):
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .sign(issuer_key, hashes.SHA256())
    )


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
