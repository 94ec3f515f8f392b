"""deploy/gramine/cloister.manifest.template renders to a manifest that asks for what Cloister needs.

Gramine itself is not installed here: the template is rendered with Jinja2 (which is what
``gramine-manifest`` does) and stand-ins for the two helpers it uses, then read as TOML. This
checks the template's syntax and the settings Cloister depends on, not Gramine's semantics.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import jinja2

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "gramine" / "cloister.manifest.template"


class _Gramine:
    libos = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so"

    @staticmethod
    def runtimedir() -> str:
        return "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc"


class _Python:
    @staticmethod
    def get_sys_path(entrypoint: str) -> list[Path]:
        return [Path(p) for p in sys.path if p and Path(p).exists()]


def _render(service: str) -> dict[str, object]:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # TOML, not HTML
    text = environment.from_string(TEMPLATE.read_text()).render(
        gramine=_Gramine,
        python=_Python,
        service=service,
        entrypoint="/usr/bin/python3.11",
        venv="/opt/cloister",
        arch_libdir="/lib/x86_64-linux-gnu",
        state_dir="/var/lib/cloister",
        log_level="error",
    )
    return tomllib.loads(text)


def test_a_production_enclave_attested_with_dcap() -> None:
    manifest = _render("frontend")
    sgx = manifest["sgx"]
    assert isinstance(sgx, dict)
    assert sgx["remote_attestation"] == "dcap"
    assert sgx["debug"] is False
    assert sgx["max_threads"] >= 16
    assert sgx["enclave_size"].endswith("G")


def test_the_service_and_its_settings_are_fixed_in_the_manifest() -> None:
    manifest = _render("storage")
    loader = manifest["loader"]
    assert isinstance(loader, dict)
    assert loader["argv"][:5] == ["python3", "-m", "cloister", "service", "storage"]
    assert "insecure__use_cmdline_argv" not in loader and "insecure__use_host_env" not in loader
    sgx = manifest["sgx"]
    assert isinstance(sgx, dict)
    trusted = sgx["trusted_files"]
    assert "file:/etc/cloister/cloister.toml" in trusted  # the attestation policy is measured
    assert "file:/var/lib/cloister/attestation/as_root_ca.pem" in trusted
    assert not any("enclave_info" in uri for uri in trusted)  # it cannot contain its own hash


def test_the_services_own_state_is_encrypted() -> None:
    fs = _render("authentication")["fs"]
    assert isinstance(fs, dict)
    encrypted = {m["path"]: m for m in fs["mounts"] if m.get("type") == "encrypted"}
    assert sorted(encrypted) == [
        "/var/lib/cloister/audit-spool",
        "/var/lib/cloister/authentication",
        "/var/lib/cloister/storage",
    ]
    assert {m["key_name"] for m in encrypted.values()} == {"_sgx_mrsigner"}
