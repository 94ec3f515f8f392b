"""The console's TLS certificate: the configured one, or a self-signed one made once per state directory."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloister.config import Settings

_VALID_FOR = dt.timedelta(days=397)
"""What browsers accept for a server certificate's lifetime at most."""


def certificate_paths(settings: Settings) -> tuple[Path, Path]:
    """``(certificate, key)``: the configured pair, or the self-signed one in ``<state>/console``."""
    console = settings.console
    if console.certificate is not None and console.key is not None:
        return console.certificate, console.key
    directory = settings.state_dir / "console"
    return directory / "console.crt", directory / "console.key"


def ensure_certificate(settings: Settings) -> tuple[Path, Path]:
    """The console's certificate and key, made (self-signed, for ``[console] address``'s host,
    ``localhost`` and 127.0.0.1) when none is configured and none was made before or it expired."""
    certificate, key = certificate_paths(settings)
    if settings.console.certificate is not None or _still_valid(certificate):
        return certificate, key
    certificate.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ec.generate_private_key(ec.SECP256R1())
    host = settings.console.address.host
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
    except ValueError:
        names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cloister console")])
    now = dt.datetime.now(dt.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private, hashes.SHA256())
    )
    pem_key = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(key, pem_key, 0o600)
    _write(certificate, built.public_bytes(serialization.Encoding.PEM), 0o644)
    return certificate, key


def _still_valid(path: Path) -> bool:
    try:
        existing = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    return existing.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
