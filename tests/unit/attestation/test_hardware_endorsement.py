"""The attestation service verifies real SGX, TDX, SEV-SNP and Nitro evidence, then the TEE policy decides.

The evidence is the real, hardware-signed fixtures of ``../shared/fixtures/tee-evidence``, each
verified at a time pinned inside its window (``NOTICE.md``). They were made for other keys than
any a test holds, and no test can forge hardware evidence for a key of its own, so the furthest
genuine evidence gets is the last check: verified, accepted by a lenient policy, then refused
because its report data does not bind the key to be certified. Which quote body an accepted
report would carry is tested on fixed claims (``quote_body_of``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tee_stand_ins import EXPIRED_AT, FLIPPED_BYTE, VERIFIES_AT, fixture_evidence

from cloister.attestation.certificate import new_key, report_data_for
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.hardware.claims import Claims, TCBStatus
from cloister.attestation.hardware.evidence import (
    effective_policy,
    quote_body_of,
    quote_status_of,
    verify_evidence,
)
from cloister.attestation.hardware.tee_policy import TeePolicy
from cloister.attestation.identity import open_backend
from cloister.attestation.quote import QuoteBody
from cloister.config import SERVICES
from cloister.errors import AttestationError
from cloister.services.attestation.endorser import Endorser

LIFETIME = dt.timedelta(hours=1)

LENIENT = TeePolicy(
    min_tcb_status=TCBStatus.OUT_OF_DATE,
    tolerated_advisories=frozenset({"INTEL-SA-00289", "INTEL-SA-00615"}),
    allow_debug=True,
)

KINDS = tuple(VERIFIES_AT)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("deployment"), SERVICES)


def _public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("kind", KINDS)
def test_genuine_evidence_verifies_and_passes_a_lenient_policy_but_binds_another_key(
    deployment: Deployment, kind: str
) -> None:
    evidence = fixture_evidence(kind)
    claims = verify_evidence(evidence, at=VERIFIES_AT[kind], quoting_public_key=deployment.sim_quoting_public_key())
    assert claims.platform == kind and not claims.simulated
    assert LENIENT.evaluate(claims, VERIFIES_AT[kind]).ok
    endorser = Endorser(deployment, LIFETIME, LENIENT, tee_backend=kind)
    with pytest.raises(AttestationError, match="report data does not bind the key"):
        endorser.endorse(evidence, _public(new_key()), "storage", VERIFIES_AT[kind])


def test_a_strict_policy_refuses_each_kind_with_its_reasons(deployment: Deployment) -> None:
    key = _public(new_key())
    strict: dict[str, tuple[TeePolicy, list[str]]] = {
        "sgx": (
            TeePolicy(),
            [
                "TCB status ConfigurationAndSWHardeningNeeded is below UpToDate",
                "advisories not tolerated: INTEL-SA-00289, INTEL-SA-00615",
            ],
        ),
        "tdx": (
            TeePolicy(measurements={"tdx": {"mr_td": frozenset({bytes(48)})}}),
            ["mr_td ", " is not an accepted value"],
        ),
        "sev-snp": (TeePolicy(min_tcb_levels={"sev-snp": {"snp": 255}}), ["TCB level snp is ", "below 255"]),
        "nitro": (
            TeePolicy(platforms=frozenset({"sgx", "tdx"}), max_evidence_age=dt.timedelta(minutes=1)),
            ["platform nitro is not accepted (accepted: sgx, tdx)", "older than 0:01:00"],
        ),
    }
    for kind, (policy, reasons) in strict.items():
        at = VERIFIES_AT[kind] + (dt.timedelta(hours=2) if kind == "nitro" else dt.timedelta())
        endorser = Endorser(deployment, LIFETIME, policy, tee_backend=kind)
        with pytest.raises(AttestationError, match=f"the TEE policy refuses this {kind} evidence") as refused:
            endorser.endorse(fixture_evidence(kind), key, "storage", at)
        for reason in reasons:
            assert reason in refused.value.message, (kind, refused.value.message)


@pytest.mark.parametrize("kind", KINDS)
def test_evidence_after_its_window_is_refused(deployment: Deployment, kind: str) -> None:
    endorser = Endorser(deployment, LIFETIME, LENIENT, tee_backend=kind)
    with pytest.raises(AttestationError, match=r"TCBInfo expired|valid from .* not at"):
        endorser.endorse(fixture_evidence(kind), _public(new_key()), "storage", EXPIRED_AT[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_one_flipped_byte_is_refused(deployment: Deployment, kind: str) -> None:
    genuine = fixture_evidence(kind)
    flipped = bytearray(genuine.quote)
    flipped[FLIPPED_BYTE[kind]] ^= 0x01
    endorser = Endorser(deployment, LIFETIME, LENIENT, tee_backend=kind)
    with pytest.raises(AttestationError, match=r"signature .*(is invalid|does not verify)"):
        endorser.endorse(
            dataclasses.replace(genuine, quote=bytes(flipped)), _public(new_key()), "storage", VERIFIES_AT[kind]
        )


@pytest.mark.parametrize("kind", ["sgx", "tdx"])
def test_intel_quotes_without_collateral_are_refused(deployment: Deployment, kind: str) -> None:
    endorser = Endorser(deployment, LIFETIME, LENIENT, tee_backend=kind)
    bare = dataclasses.replace(fixture_evidence(kind), collateral=b"")
    with pytest.raises(AttestationError, match=f"{kind.upper()} evidence came without Intel's PCS collateral"):
        endorser.endorse(bare, _public(new_key()), "storage", VERIFIES_AT[kind])


def test_snp_needs_a_vcek_from_the_host_and_never_takes_a_root_from_it(deployment: Deployment) -> None:
    endorser = Endorser(deployment, LIFETIME, LENIENT, tee_backend="sev-snp")
    key = _public(new_key())
    with pytest.raises(AttestationError, match="without the host's certificate table"):
        endorser.endorse(
            dataclasses.replace(fixture_evidence("sev-snp"), certificates=b""), key, "storage", VERIFIES_AT["sev-snp"]
        )
    with pytest.raises(AttestationError, match="holds no VCEK or VLEK"):
        endorser.endorse(
            dataclasses.replace(fixture_evidence("sev-snp"), certificates=bytes(24)),
            key,
            "storage",
            VERIFIES_AT["sev-snp"],
        )


def test_simulated_evidence_only_in_a_simulated_deployment(deployment: Deployment) -> None:
    key = new_key()
    evidence = open_backend("sim", deployment, "storage").evidence(report_data_for(key.public_key()))
    endorsement = Endorser(deployment, LIFETIME, tee_backend="sim").endorse(
        evidence, _public(key), "storage", VERIFIES_AT["sgx"]
    )
    report = json.loads(endorsement.report.report)
    assert report["cloisterTeeBackend"] == "sim" and report["isvEnclaveQuoteStatus"] == "OK"
    assert report["cloisterService"] == "teaclave_storage_service"  # the name asked for, signed
    # A hardware deployment refuses it, even under a policy that says simulated evidence is fine.
    permissive = dataclasses.replace(LENIENT, platforms=frozenset({"tdx", "sim"}), allow_simulated=True)
    for policy in (LENIENT, permissive):
        with pytest.raises(AttestationError, match="simulated") as refused:
            Endorser(deployment, LIFETIME, policy, tee_backend="tdx").endorse(
                evidence, _public(key), "storage", VERIFIES_AT["sgx"]
            )
        assert "the TEE policy refuses this sim evidence" in refused.value.message


def test_effective_policy() -> None:
    assert effective_policy(TeePolicy(), "sim").allow_simulated
    assert "sim" in effective_policy(TeePolicy(), "sim").platforms
    assert not effective_policy(TeePolicy(allow_simulated=True), "sev-snp").allow_simulated


def _claims(platform: str, measurements: dict[str, bytes], **changes: object) -> Claims:
    base = Claims(
        platform=platform,  # type: ignore[arg-type]
        measurements=measurements,
        report_data=bytes(range(64)),
        tcb_status=TCBStatus.UNRATED,
        not_before=VERIFIES_AT["sgx"],
        not_after=EXPIRED_AT["sgx"],
        evidence_digest=bytes(32),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def test_quote_body_rule_per_platform() -> None:
    data = bytes(range(64))
    sgx = _claims(
        "sgx",
        {"mr_enclave": b"E" * 32, "mr_signer": b"S" * 32},
        tcb_levels={"isv_prod_id": 7, "isv_svn": 9},
    )
    assert quote_body_of(sgx) == QuoteBody(3, b"E" * 32, b"S" * 32, data, 7, 9)
    tdx = {name: name.encode().ljust(48, b".") for name in ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_seam")}
    expected = _sha(tdx["mr_td"], tdx["rtmr0"], tdx["rtmr1"], tdx["rtmr2"], tdx["rtmr3"])
    assert quote_body_of(_claims("tdx", tdx)) == QuoteBody(4, expected, _sha(tdx["mr_seam"]), data)
    without_seam = {k: v for k, v in tdx.items() if k != "mr_seam"}
    assert quote_body_of(_claims("tdx", without_seam)).mr_signer == bytes(32)
    snp = {"measurement": b"M" * 48, "id_key_digest": b"I" * 48, "host_data": b"H" * 32}
    assert quote_body_of(_claims("sev-snp", snp)) == QuoteBody(0, _sha(b"M" * 48), _sha(b"I" * 48), data)
    pcrs = {f"pcr{i}": bytes([i]) * 48 for i in range(16)}
    nitro = quote_body_of(_claims("nitro", pcrs))
    assert nitro == QuoteBody(0, _sha(pcrs["pcr0"], pcrs["pcr1"], pcrs["pcr2"]), _sha(pcrs["pcr8"]), data)
    assert quote_body_of(_claims("nitro", {k: v for k, v in pcrs.items() if k != "pcr8"})).mr_signer == bytes(32)


def test_quote_body_refuses_what_the_rule_cannot_map() -> None:
    with pytest.raises(AttestationError, match="without measurement 'rtmr3'"):
        quote_body_of(_claims("tdx", {"mr_td": bytes(48), "rtmr0": bytes(48), "rtmr1": bytes(48), "rtmr2": bytes(48)}))
    with pytest.raises(AttestationError, match="without measurement 'pcr2'"):
        quote_body_of(_claims("nitro", {"pcr0": bytes(48), "pcr1": bytes(48)}))
    with pytest.raises(AttestationError, match="report data is 1024 bytes, not 64"):
        quote_body_of(_claims("nitro", {"pcr0": bytes(48)}, report_data=b"\1" * 1024))
    with pytest.raises(AttestationError, match="mr_enclave is 48 bytes, not 32"):
        quote_body_of(_claims("sgx", {"mr_enclave": bytes(48), "mr_signer": bytes(32)}))


def test_report_status_follows_the_tcb_rating() -> None:
    assert quote_status_of(_claims("tdx", {}, tcb_status=TCBStatus.UP_TO_DATE)) == "OK"
    assert quote_status_of(_claims("sev-snp", {})) == "OK"  # unrated: bounded by the policy's TCB levels
    assert quote_status_of(_claims("sgx", {}, tcb_status=TCBStatus.OUT_OF_DATE)) == "OUT_OF_DATE"
    with pytest.raises(AttestationError, match="Revoked: never endorsed"):
        quote_status_of(_claims("sgx", {}, tcb_status=TCBStatus.REVOKED))
