"""A TEE policy decides on verified claims: strict refuses what lenient accepts, every reason listed."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from shared_fixtures import TEE_EVIDENCE

from cloister.attestation.hardware.claims import Claims, TCBStatus
from cloister.attestation.hardware.dcap import verify_sgx
from cloister.attestation.hardware.simulated import verify_sim
from cloister.attestation.hardware.tee_policy import TeePolicy, load_tee_policy
from cloister.attestation.sim import SimulatedBackend
from cloister.config import TeePolicySettings, load_settings
from cloister.errors import AttestationError, ConfigurationError

AT = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
SGX = verify_sgx(
    (TEE_EVIDENCE / "sgx" / "sgx_quote").read_bytes(),
    collateral=(TEE_EVIDENCE / "sgx" / "sgx_quote_collateral.json").read_text(),
    at=AT,
)
STRICT = TeePolicy()
LENIENT = TeePolicy(
    min_tcb_status=TCBStatus.OUT_OF_DATE,
    tolerated_advisories=frozenset({"INTEL-SA-00289", "INTEL-SA-00615"}),
    allow_debug=True,
)


def test_strict_policy_refuses_the_sgx_fixture_for_its_tcb_and_advisories() -> None:
    verdict = STRICT.evaluate(SGX, AT)
    assert not verdict.ok
    assert verdict.reasons == (
        "TCB status ConfigurationAndSWHardeningNeeded is below UpToDate",
        "advisories not tolerated: INTEL-SA-00289, INTEL-SA-00615",
    )
    assert LENIENT.evaluate(SGX, AT).ok


def test_out_of_date_tcb_is_refused_by_strict_and_accepted_by_lenient() -> None:
    out_of_date = dataclasses.replace(SGX, tcb_status=TCBStatus.OUT_OF_DATE, advisories=())
    assert "TCB status OutOfDate is below UpToDate" in STRICT.evaluate(out_of_date, AT).reasons
    assert LENIENT.evaluate(out_of_date, AT).ok
    revoked = dataclasses.replace(out_of_date, tcb_status=TCBStatus.REVOKED)
    assert not LENIENT.evaluate(revoked, AT).ok


def test_debug_is_refused_unless_allowed() -> None:
    debug = dataclasses.replace(SGX, tcb_status=TCBStatus.UP_TO_DATE, advisories=(), debug=True)
    assert STRICT.evaluate(debug, AT).reasons == (
        "the TEE runs in debug mode (its memory is open to the host) and the policy refuses that",
    )
    assert LENIENT.evaluate(debug, AT).ok


def test_policy_refuses_evidence_outside_its_window() -> None:
    verdict = LENIENT.evaluate(SGX, dt.datetime(2025, 8, 1, tzinfo=dt.UTC))
    assert not verdict.ok and "not at 2025-08-01" in verdict.reasons[0]


def test_measurements_and_signers_must_be_listed() -> None:
    enclave = SGX.measurements["mr_enclave"]
    signer = SGX.measurements["mr_signer"]
    accepting = dataclasses.replace(
        LENIENT, measurements={"sgx": {"mr_enclave": frozenset({enclave})}}, signers={"sgx": frozenset({signer})}
    )
    assert accepting.evaluate(SGX, AT).ok
    refusing = dataclasses.replace(
        LENIENT, measurements={"sgx": {"mr_enclave": frozenset({b"\0" * 32})}}, signers={"sgx": frozenset({b"\1" * 32})}
    )
    reasons = refusing.evaluate(SGX, AT).reasons
    assert reasons == (
        f"mr_enclave {enclave.hex()} is not an accepted value",
        f"signer (mr_signer) {signer.hex()} is not accepted",
    )
    assert not dataclasses.replace(LENIENT, platforms=frozenset({"tdx"})).evaluate(SGX, AT).ok


def test_simulated_evidence_is_refused_by_a_production_policy() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    evidence = SimulatedBackend("storage", key, b"platform signer").evidence(b"\x07" * 64)
    claims = verify_sim(evidence, quoting_public_key=key.public_key(), at=AT)
    assert claims.simulated and claims.platform == "sim" and claims.report_data == b"\x07" * 64
    production = TeePolicy.from_settings(TeePolicySettings())
    reasons = production.evaluate(claims, AT).reasons
    assert "the evidence is simulated (no hardware root of trust) and the policy refuses that" in reasons
    assert any(reason.startswith("platform sim is not accepted") for reason in reasons)
    development = TeePolicy(platforms=frozenset({"sim"}), allow_simulated=True)
    assert development.evaluate(claims, AT).ok
    with pytest.raises(AttestationError):
        verify_sim(evidence, quoting_public_key=ec.generate_private_key(ec.SECP256R1()).public_key(), at=AT)


def test_snp_levels_and_nitro_age_bound_unrated_evidence() -> None:
    base = dict(
        measurements={},
        report_data=b"",
        tcb_status=TCBStatus.UNRATED,
        not_before=AT - dt.timedelta(days=1),
        not_after=AT + dt.timedelta(days=1),
        evidence_digest=b"\0" * 32,
    )
    snp = Claims(platform="sev-snp", tcb_levels={"snp": 8, "microcode": 115}, **base)  # type: ignore[arg-type]
    assert STRICT.evaluate(snp, AT).ok  # AMD does not rate the TCB: the policy bounds its levels
    newer = TeePolicy(min_tcb_levels={"sev-snp": {"snp": 9, "microcode": 115}})
    assert newer.evaluate(snp, AT).reasons == ("TCB level snp is 8, below 9",)
    nitro = Claims(platform="nitro", issued_at=AT - dt.timedelta(hours=2), **base)  # type: ignore[arg-type]
    assert TeePolicy(max_evidence_age=dt.timedelta(hours=3)).evaluate(nitro, AT).ok
    assert not TeePolicy(max_evidence_age=dt.timedelta(hours=1)).evaluate(nitro, AT).ok
    future = Claims(platform="nitro", issued_at=AT + dt.timedelta(hours=1), **base)  # type: ignore[arg-type]
    refused = TeePolicy(max_evidence_age=dt.timedelta(hours=3)).evaluate(future, AT)
    assert refused.reasons == (
        f"the evidence says it was made at {future.issued_at.isoformat()}, after {AT.isoformat()}",
    )  # type: ignore[union-attr]
    assert not STRICT.evaluate(future, AT).ok  # without an age bound too
    skewed = Claims(platform="nitro", issued_at=AT + dt.timedelta(minutes=1), **base)  # type: ignore[arg-type]
    assert TeePolicy(max_evidence_age=dt.timedelta(hours=3)).evaluate(skewed, AT).ok


def test_policy_file_loads_from_a_tee_policy_table_and_refuses_nonsense(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[tee_policy]\n"
        'platforms = ["sgx"]\n'
        'min_tcb_status = "ConfigurationAndSWHardeningNeeded"\n'
        'tolerated_advisories = ["INTEL-SA-00289", "INTEL-SA-00615"]\n'
        "[tee_policy.signers]\n"
        f'sgx = ["{SGX.measurements["mr_signer"].hex()}"]\n'
    )
    policy = load_tee_policy(path)
    assert policy.evaluate(SGX, AT).ok and not policy.allow_debug and not policy.allow_simulated
    path.write_text('min_tcb_status = "Fine"\n')
    with pytest.raises(ConfigurationError, match="unknown TCB status 'Fine'"):
        load_tee_policy(path)
    path.write_text("allow_debugging = true\n")
    with pytest.raises(ConfigurationError, match="allow_debugging"):
        load_tee_policy(path)
    path.write_text('[signers]\nsgx = ["zz"]\n')
    with pytest.raises(ConfigurationError, match="not hex"):
        load_tee_policy(path)


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("UpToDate", TCBStatus.UP_TO_DATE),
        ("OK", TCBStatus.UP_TO_DATE),
        ("SW_HARDENING_NEEDED", TCBStatus.SW_HARDENING_NEEDED),
        ("ConfigurationAndSWHardeningNeeded", TCBStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED),
        ("OUT_OF_DATE", TCBStatus.OUT_OF_DATE),
        ("Revoked", TCBStatus.REVOKED),
    ],
)
def test_tcb_status_reads_each_engines_words_in_order(word: str, status: TCBStatus) -> None:
    assert TCBStatus.parse(word) is status
    assert TCBStatus.UP_TO_DATE > TCBStatus.SW_HARDENING_NEEDED > TCBStatus.CONFIGURATION_NEEDED
    assert TCBStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED > TCBStatus.OUT_OF_DATE > TCBStatus.REVOKED


def test_tee_policy_section_of_the_settings_with_environment_overrides(tmp_path: Path) -> None:
    config = tmp_path / "cloister.toml"
    config.write_text('[tee_policy]\nplatforms = ["sgx"]\nmin_tcb_status = "OutOfDate"\n')
    env = {
        "CLOISTER_TEE_POLICY__TOLERATED_ADVISORIES": "INTEL-SA-00289,INTEL-SA-00615",
        "CLOISTER_TEE_POLICY__SIGNERS": f'{{"sgx": ["{SGX.measurements["mr_signer"].hex()}"]}}',
    }
    settings = load_settings(config, env, state_dir=tmp_path / "state")
    policy = TeePolicy.from_settings(settings.tee_policy)
    assert policy.evaluate(SGX, AT).ok
    assert not dataclasses.replace(policy, signers={"sgx": frozenset()}).evaluate(SGX, AT).ok
    with pytest.raises(ConfigurationError, match="JSON in the environment"):
        load_settings(config, {"CLOISTER_TEE_POLICY__SIGNERS": "sgx=ab"}, state_dir=tmp_path / "state")
