"""``cloister attest --evidence``: exit 0 only when the evidence verifies (and the policy holds), 1 with the reason."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from shared_fixtures import TEE_EVIDENCE

SGX = ["--evidence", TEE_EVIDENCE / "sgx" / "sgx_quote", "--kind", "sgx"]
SGX_COLLATERAL = ["--collateral", TEE_EVIDENCE / "sgx" / "sgx_quote_collateral.json"]
INSIDE = ["--at", "2025-07-01T00:00:00Z"]


def _attest(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloister", "attest", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_sgx_quote_without_policy_verifies_and_reports_tcb() -> None:
    run = _attest(*SGX, *SGX_COLLATERAL, *INSIDE)
    assert run.returncode == 0, run.stderr
    assert "TCB status         ConfigurationAndSWHardeningNeeded" in run.stdout
    assert "advisories         INTEL-SA-00289, INTEL-SA-00615" in run.stdout
    assert "FMSPC              00A067110000" in run.stdout
    assert run.stdout.rstrip().endswith("not judged)")


def test_sgx_quote_after_its_window_exits_1_with_the_reason() -> None:
    run = _attest(*SGX, *SGX_COLLATERAL, "--at", "2025-07-20T00:00:00Z")
    assert run.returncode == 1
    assert "NOT VERIFIED" in run.stderr and "TCBInfo expired" in run.stderr


def test_policy_decides_the_exit_code(tmp_path: Path) -> None:
    strict = tmp_path / "strict.toml"
    strict.write_text('[tee_policy]\nplatforms = ["sgx"]\n')
    run = _attest(*SGX, *SGX_COLLATERAL, *INSIDE, "--policy", strict)
    assert run.returncode == 1
    assert "policy refuses: TCB status ConfigurationAndSWHardeningNeeded is below UpToDate" in run.stderr
    lenient = tmp_path / "lenient.toml"
    lenient.write_text(
        'platforms = ["sgx"]\nmin_tcb_status = "OutOfDate"\n'
        'tolerated_advisories = ["INTEL-SA-00289", "INTEL-SA-00615"]\n'
    )
    run = _attest(*SGX, *SGX_COLLATERAL, *INSIDE, "--policy", lenient)
    assert run.returncode == 0, run.stderr
    assert "VERIFIED: authentic, valid, and the policy accepts it" in run.stdout


def test_evidence_may_be_hex_or_base64_and_certificates_are_found_by_content(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(TEE_EVIDENCE / "sev-snp" / "vcek_milan.der", certs / "a")
    shutil.copy(TEE_EVIDENCE / "sev-snp" / "ask_milan.pem", certs / "b")
    (certs / "notes.txt").write_text("not a certificate\n")
    run = _attest(
        "--evidence", TEE_EVIDENCE / "sev-snp" / "report_milan.hex", "--kind", "sev-snp", "--certs", certs, *INSIDE
    )
    assert run.returncode == 0, run.stderr
    assert "TCB levels         boot_loader 3, tee 0, snp 8, microcode 115" in run.stdout
    run = _attest(
        "--evidence",
        TEE_EVIDENCE / "nitro" / "nitro_attestation.b64",
        "--kind",
        "nitro",
        "--at",
        "2024-09-07T15:00:00Z",
    )
    assert run.returncode == 0, run.stderr
    assert "module id          i-0a22e5c5f24d22174-enc0191cceb4289903f" in run.stdout


def test_flipped_byte_and_missing_inputs_exit_1(tmp_path: Path) -> None:
    quote = bytearray((TEE_EVIDENCE / "sgx" / "sgx_quote").read_bytes())
    quote[200] ^= 1
    (tmp_path / "quote").write_bytes(bytes(quote))
    run = _attest("--evidence", tmp_path / "quote", "--kind", "sgx", *SGX_COLLATERAL, *INSIDE)
    assert run.returncode == 1 and "does not verify" in run.stderr
    run = _attest(*SGX, *INSIDE)
    assert run.returncode == 1 and "give --collateral FILE" in run.stderr
    run = _attest("--evidence", TEE_EVIDENCE / "sev-snp" / "report_milan.hex", "--kind", "sev-snp", *INSIDE)
    assert run.returncode == 1 and "VCEK" in run.stderr


def test_usage_errors_exit_2() -> None:
    no_kind = _attest(*SGX[:2], *SGX_COLLATERAL)
    assert no_kind.returncode == 2 and "--evidence needs --kind" in no_kind.stderr
    no_offset = _attest(*SGX, *SGX_COLLATERAL, "--at", "2025-07-01T00:00:00")
    assert no_offset.returncode == 2 and "has no time zone offset" in no_offset.stderr
    stray = _attest("--certificate", "x.der", "--kind", "sgx")
    assert stray.returncode == 2 and "go with --evidence FILE" in stray.stderr


def test_an_intel_root_among_the_certificates_never_replaces_the_pinned_one(tmp_path: Path) -> None:
    """--certs may come from whoever sent the evidence: a root of theirs named like Intel's is ignored."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX Root CA")])
    forged = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2040, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "root.pem").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    run = _attest(*SGX, *SGX_COLLATERAL, *INSIDE, "--certs", certs)
    assert run.returncode == 0, run.stderr  # still verified under Intel's pinned root
    assert "Intel's root CA is pinned" in run.stdout + run.stderr
