"""Identities are measured code, signed by auditors: change the code and peers refuse it until re-signed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NO_FUNCTIONS, admin
from cryptography.hazmat.primitives import serialization

from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo, sign_enclave_info
from cloister.attestation.measurement import PACKAGE_ROOT, mr_enclave
from cloister.errors import CloisterError, UnavailableError
from cloister.launcher import ServiceFailedError
from cloister.testing import RunningPlatform


def _resign(state_dir: Path, service: str, measurement: bytes) -> None:
    """What an auditor does after reviewing new code: record its measurement and sign the file."""
    attestation = state_dir / "attestation"
    info = EnclaveInfo.parse((attestation / "enclave_info.toml").read_bytes())
    identities = [
        EnclaveIdentity(i.name, measurement if i.name == f"teaclave_{service}_service" else i.mr_enclave, i.mr_signer)
        for i in info.identities()
    ]
    raw = EnclaveInfo.render(identities)
    key = serialization.load_pem_private_key((attestation / "auditors" / "dev.key").read_bytes(), None)
    (attestation / "enclave_info.toml").write_bytes(raw)
    (attestation / "auditors" / "dev.sign.sha256").write_bytes(sign_enclave_info(raw, key))  # type: ignore[arg-type]


def test_changed_service_code_is_refused_until_resigned(own_platform: RunningPlatform, tmp_path: Path) -> None:
    source = tmp_path / "modified" / "cloister"
    shutil.copytree(PACKAGE_ROOT, source, ignore=shutil.ignore_patterns("__pycache__"))
    with (source / "services" / "management" / "tasks.py").open("a") as f:
        f.write("\n# an unaudited change\n")
    modified = {"PYTHONPATH": str(source.parent)}
    platform = own_platform.platform

    platform.stop_service("management")
    platform.start_service("management", extra_env=modified)
    root = admin(own_platform)  # login goes to authentication, which does not talk to management
    with pytest.raises(UnavailableError, match=r"management failed attestation.*not in enclave_info"):
        root.frontend.list_functions(own_platform.admin_user)

    _resign(own_platform.state_dir, "management", mr_enclave("management", source))
    for name in ("storage", "access_control", "frontend"):  # peers load the identity file at start
        platform.stop_service(name)
        platform.start_service(name)
    platform.stop_service("management")
    platform.start_service("management", extra_env=modified)
    again = admin(own_platform)
    assert again.frontend.list_functions(own_platform.admin_user) == NO_FUNCTIONS


def _service(state_dir: Path, config: Path, name: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "cloister",
        "service",
        name,
        "--state-dir",
        str(state_dir),
        "--config",
        str(config),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_services_refuse_a_tampered_or_undersigned_identity_file(platform: RunningPlatform, tmp_path: Path) -> None:
    attestation = platform.state_dir / "attestation"
    tampered = tmp_path / "enclave_info.toml"
    tampered.write_bytes((attestation / "enclave_info.toml").read_bytes().replace(b"mr_signer", b"mr_signer ", 1))
    signature = attestation / "auditors" / "dev.sign.sha256"
    public_key = attestation / "auditors" / "dev.public.pem"
    base = (platform.state_dir.parent / "cloister.toml").read_text()

    config = tmp_path / "tampered.toml"
    config.write_text(
        base
        + f'\n[attestation]\nenclave_info = "{tampered}"\n'
        + f'auditor_signatures = ["{signature}"]\nauditor_public_keys = ["{public_key}"]\n'
    )
    for name in ("frontend", "storage"):
        result = _service(platform.state_dir, config, name)
        assert result.returncode == 1
        assert "does not verify" in result.stderr

    config.write_text(
        base
        + f'\n[attestation]\nenclave_info = "{attestation / "enclave_info.toml"}"\n'
        + f'auditor_signatures = ["{signature}"]\nauditor_public_keys = ["{public_key}"]\nrequired_auditors = 2\n'
    )
    result = _service(platform.state_dir, config, "frontend")
    assert result.returncode == 1
    assert "2 required" in result.stderr


def test_unknown_backend_stops_start_up(platform: RunningPlatform, tmp_path: Path) -> None:
    config = tmp_path / "sgx.toml"
    config.write_text('tee_backend = "sgx"\n' + (platform.state_dir.parent / "cloister.toml").read_text())
    result = _service(platform.state_dir, config, "frontend")
    assert result.returncode == 1
    assert "/dev/attestation/quote is missing" in result.stderr
    assert isinstance(ServiceFailedError("x"), CloisterError)
