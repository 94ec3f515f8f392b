"""A deployment's trust material in ``<state_dir>/attestation``, and who may read which part.

``provision`` creates, once, everything a development deployment needs:

========================  ==============================  =====================================
file                      what                            read by
========================  ==============================  =====================================
as_root_ca.pem            attestation root CA             everyone, clients included
as_root_ca.key            its key                         the attestation service
report_signer.pem/.key    the report-signing certificate  the attestation service
deployment_ca.pem         CA of services' client certs    every service
deployment_ca.key         its key                         the attestation service
sim_quoting.key           simulated CPU attestation key   services on the ``sim`` backend
sim_quoting.pub.pem       its public half                 the attestation service
platform_signing.pub.pem  the code signer (``mr_signer``)  services on the ``sim`` backend
auditors/dev.*            a development auditor           ``cloister up`` (signs enclave_info)
enclave_info.toml         every service's measurements    everyone, clients included
========================  ==============================  =====================================

and, at every start, measures the services and signs a fresh ``enclave_info.toml``. A
production deployment points ``[attestation] enclave_info``, ``auditor_signatures`` and
``auditor_public_keys`` at files its auditors produced instead. Private keys are readable by
their owner only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cloister.attestation.enclave_info import (
    EnclaveIdentity,
    EnclaveInfo,
    sign_enclave_info,
    verify_auditor_signatures,
)
from cloister.attestation.measurement import enclave_name, mr_enclaves, mr_signer
from cloister.config import AttestationSettings
from cloister.errors import AttestationError, ConfigurationError

AS_ROOT_CA = "as_root_ca.pem"
ENCLAVE_INFO = "enclave_info.toml"
_AS_ROOT_KEY = "as_root_ca.key"
_REPORT_SIGNER = "report_signer.pem"
_REPORT_SIGNER_KEY = "report_signer.key"
_DEPLOYMENT_CA = "deployment_ca.pem"
_DEPLOYMENT_CA_KEY = "deployment_ca.key"
_SIM_QUOTING_KEY = "sim_quoting.key"
_SIM_QUOTING_PUBLIC = "sim_quoting.pub.pem"
_PLATFORM_SIGNING_KEY = "platform_signing.key"
_PLATFORM_SIGNING_PUBLIC = "platform_signing.pub.pem"
_AUDITOR_DIR = "auditors"
_DEV_AUDITOR = "dev"


@dataclass(frozen=True)
class Deployment:
    """Where one deployment's trust material is; each role loads only what it needs."""

    directory: Path
    settings: AttestationSettings = field(default_factory=AttestationSettings)

    @property
    def as_root_ca_path(self) -> Path:
        return self.directory / AS_ROOT_CA

    @property
    def enclave_info_path(self) -> Path:
        return self.settings.enclave_info or self.directory / ENCLAVE_INFO

    # --- public material ---------------------------------------------------------------

    def as_root_ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self._read(AS_ROOT_CA))

    def as_root_ca_pem(self) -> bytes:
        return self._read(AS_ROOT_CA)

    def deployment_ca_pem(self) -> bytes:
        return self._read(_DEPLOYMENT_CA)

    def platform_signing_public_der(self) -> bytes:
        key = serialization.load_pem_public_key(self._read(_PLATFORM_SIGNING_PUBLIC))
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sim_quoting_public_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_public_key(self._read(_SIM_QUOTING_PUBLIC))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def enclave_info(self) -> EnclaveInfo:
        try:
            raw = self.enclave_info_path.read_bytes()
        except FileNotFoundError:
            raise ConfigurationError(f"{self.enclave_info_path} is missing") from None
        return EnclaveInfo.parse(raw)

    def auditor_public_keys(self) -> list[tuple[str, rsa.RSAPublicKey]]:
        paths = self.settings.auditor_public_keys or tuple(sorted((self.directory / _AUDITOR_DIR).glob("*.public.pem")))
        keys = []
        for path in paths:
            key = serialization.load_pem_public_key(_read_path(path))
            if not isinstance(key, rsa.RSAPublicKey):
                raise ConfigurationError(f"auditor key {path} is not an RSA public key")
            keys.append((path.name.split(".")[0], key))
        return keys

    def auditor_signatures(self) -> list[bytes]:
        paths = self.settings.auditor_signatures or tuple(sorted((self.directory / _AUDITOR_DIR).glob("*.sign.sha256")))
        return [_read_path(p) for p in paths]

    def verified_enclave_info(self) -> tuple[EnclaveInfo, list[str]]:
        """The identity file once enough auditors' signatures verify, and who signed it.

        Raises:
            AttestationError: a signature is missing or wrong, or too few auditors signed.
        """
        info = self.enclave_info()
        signers = verify_auditor_signatures(
            info.raw, self.auditor_signatures(), self.auditor_public_keys(), self.settings.required_auditors
        )
        return info, signers

    # --- secrets, each for one role ----------------------------------------------------

    def report_signer(self) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        return self._own_rsa_key(_REPORT_SIGNER_KEY), x509.load_pem_x509_certificate(self._read(_REPORT_SIGNER))

    def as_root_ca_key(self) -> rsa.RSAPrivateKey:
        return self._own_rsa_key(_AS_ROOT_KEY)

    def deployment_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = serialization.load_pem_private_key(self._read(_DEPLOYMENT_CA_KEY), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(self._read(_DEPLOYMENT_CA)), key

    def sim_quoting_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self._read(_SIM_QUOTING_KEY), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def _read(self, name: str) -> bytes:
        return _read_path(self.directory / name)

    def _own_rsa_key(self, name: str) -> rsa.RSAPrivateKey:
        """An RSA key :func:`provision` generated, loaded without re-checking its primes.

        The check costs the attestation service a quarter of its start (0.1 s a key), which a
        restart under load multiplies. It guards against keys from elsewhere; these were made
        here and sit in files only the deployment writes, and OpenSSL verifies each CRT
        signature before returning it, so a damaged key cannot leak through a faulty one.
        """
        key = serialization.load_pem_private_key(self._read(name), None, unsafe_skip_rsa_key_validation=True)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError(f"{self.directory / name} is not an RSA private key")
        return key


def _read_path(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{path} is missing: start the platform with 'cloister up' to create it") from None


def provision(
    directory: Path,
    services: tuple[str, ...],
    settings: AttestationSettings | None = None,
    now: dt.datetime | None = None,
) -> Deployment:
    """Create what is missing; measure and sign ``enclave_info.toml`` unless one is provided."""
    settings = settings or AttestationSettings()
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    (directory / _AUDITOR_DIR).mkdir(exist_ok=True)
    deployment = Deployment(directory, settings)

    if not (directory / _AS_ROOT_KEY).exists():
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        root = _ca_certificate("Cloister Simulated Attestation Root CA", root_key, now, years=10)
        signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signer = issue_certificate(
            "Cloister Simulated Attestation Report Signing", signer_key.public_key(), root, root_key, now,
            dt.timedelta(days=365 * 5),
        )  # fmt: skip
        _write_key(directory / _AS_ROOT_KEY, root_key)
        _write_key(directory / _REPORT_SIGNER_KEY, signer_key)
        (directory / _REPORT_SIGNER).write_bytes(signer.public_bytes(serialization.Encoding.PEM))
        (directory / AS_ROOT_CA).write_bytes(root.public_bytes(serialization.Encoding.PEM))
    if not (directory / _DEPLOYMENT_CA_KEY).exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _ca_certificate("Cloister Deployment CA", ca_key, now, years=10)
        _write_key(directory / _DEPLOYMENT_CA_KEY, ca_key)
        (directory / _DEPLOYMENT_CA).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for private, public in ((_SIM_QUOTING_KEY, _SIM_QUOTING_PUBLIC), (_PLATFORM_SIGNING_KEY, _PLATFORM_SIGNING_PUBLIC)):
        if not (directory / private).exists():
            key = ec.generate_private_key(ec.SECP256R1())
            _write_key(directory / private, key)
            (directory / public).write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
    if not settings.uses_provided_identities:
        _sign_development_identities(deployment, services)
    return deployment


def measured_identities(deployment: Deployment, services: tuple[str, ...]) -> list[EnclaveIdentity]:
    """What ``enclave_info.toml`` should say for the code installed here."""
    signer = mr_signer(deployment.platform_signing_public_der())
    measured = mr_enclaves(services)
    return [EnclaveIdentity(enclave_name(s), measured[s], signer) for s in services]


def _sign_development_identities(deployment: Deployment, services: tuple[str, ...]) -> None:
    write_signed_identities(deployment, measured_identities(deployment, services))


def write_signed_identities(deployment: Deployment, identities: list[EnclaveIdentity]) -> None:
    """Write ``identities`` as the deployment's ``enclave_info.toml``, signed by its development auditor.

    The auditor's key is made on first use; the file and its signature are each replaced atomically.
    """
    directory = deployment.directory
    auditor_key_path = directory / _AUDITOR_DIR / f"{_DEV_AUDITOR}.key"
    if not auditor_key_path.exists():
        auditor_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        _write_key(auditor_key_path, auditor_key)
        (directory / _AUDITOR_DIR / f"{_DEV_AUDITOR}.public.pem").write_bytes(
            auditor_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        )
    raw = EnclaveInfo.render(identities)
    auditor_key = serialization.load_pem_private_key(auditor_key_path.read_bytes(), None)
    assert isinstance(auditor_key, rsa.RSAPrivateKey)
    _atomic_write(directory / ENCLAVE_INFO, raw)
    _atomic_write(directory / _AUDITOR_DIR / f"{_DEV_AUDITOR}.sign.sha256", sign_enclave_info(raw, auditor_key))


def _ca_certificate(
    name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, now: dt.datetime, years: int
) -> x509.Certificate:
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
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )


def issue_certificate(
    name: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    lifetime: dt.timedelta,
    extensions: tuple[x509.ExtensionType, ...] = (),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
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


__all__ = ["AttestationError", "Deployment", "measured_identities", "provision", "write_signed_identities"]
