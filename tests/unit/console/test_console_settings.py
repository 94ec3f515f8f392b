"""``[console]`` settings and the console's self-signed certificate."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cloister.config import load_settings
from cloister.console.certificate import ensure_certificate
from cloister.errors import ConfigurationError


def settings(tmp_path: Path, **env: str):
    return load_settings(None, {f"CLOISTER_CONSOLE__{k.upper()}": v for k, v in env.items()}, state_dir=tmp_path)


@pytest.mark.parametrize("address", ["0.0.0.0:7780", "10.0.0.5:7780", "console.example:443"])
def test_plain_http_is_refused_off_loopback(tmp_path: Path, address: str) -> None:
    with pytest.raises(ConfigurationError, match="plain_http is allowed only on a loopback address"):
        settings(tmp_path, address=address, plain_http="true")


@pytest.mark.parametrize("address", ["127.0.0.1:0", "localhost:7780", "[::1]:7780"])
def test_plain_http_is_allowed_on_loopback(tmp_path: Path, address: str) -> None:
    assert settings(tmp_path, address=address, plain_http="true").console.plain_http


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="certificate and key go together"):
        settings(tmp_path, certificate=str(tmp_path / "c.pem"))


def test_the_self_signed_certificate_is_made_once_for_the_console_address(tmp_path: Path) -> None:
    configured = settings(tmp_path, address="192.0.2.7:7780")
    certificate, key = ensure_certificate(configured)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = x509.load_pem_x509_certificate(certificate.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.0.2.7") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ensure_certificate(configured) == (certificate, key)
    assert certificate.read_bytes() == loaded.public_bytes(Encoding.PEM)  # not made again
