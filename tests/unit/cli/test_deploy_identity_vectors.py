"""Hardware identities from the real SGX, TDX, SEV-SNP and Nitro fixtures: written by ``cloister deploy``,
recognised for the named service only, and refused under any other platform, name or a simulated report.

No test can make hardware evidence for a key of its own (``test_hardware_endorsement``), so a
"hardware peer" here is the report the attestation service would sign had the fixture been made
for the peer's key: the fixture's verified claims, mapped by ``quote_body_of`` with that key's X‖Y
as report data, signed by the deployment's own report signer. Every check after that is the real one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from shared_fixtures import TEE_EVIDENCE

from cloister.attestation.backends import Evidence
from cloister.attestation.certificate import build_certificate, new_key, report_data_for
from cloister.attestation.deployment import Deployment
from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo, verify_auditor_signatures
from cloister.attestation.hardware.claims import Claims
from cloister.attestation.hardware.evidence import quote_body_of
from cloister.attestation.quote import QuoteBody
from cloister.attestation.report import AttestationPolicy, ReportSigner
from cloister.attestation.verify import PeerVerifier
from cloister.cli.attest_evidence import check_evidence
from cloister.cli.deployment_plan import ALL_SERVICES
from cloister.cli.main import main
from cloister.config import SERVICES
from cloister.errors import AttestationError
from cloister.services.attestation.endorser import Endorser

KINDS = ("sgx", "tdx", "sev-snp", "nitro")
INSIDE = {  # each fixture's window, NOTICE.md
    "sgx": dt.datetime(2025, 7, 1, tzinfo=dt.UTC),
    "tdx": dt.datetime(2025, 7, 1, tzinfo=dt.UTC),
    "sev-snp": dt.datetime(2025, 7, 1, tzinfo=dt.UTC),
    "nitro": dt.datetime(2024, 9, 7, 14, 37, 39, 545000, tzinfo=dt.UTC),
}
EVIDENCE = {
    "sgx": TEE_EVIDENCE / "sgx" / "sgx_quote",
    "tdx": TEE_EVIDENCE / "tdx" / "tdx_quote",
    "sev-snp": TEE_EVIDENCE / "sev-snp" / "report_milan.hex",
    "nitro": TEE_EVIDENCE / "nitro" / "nitro_attestation.b64",
}
COLLATERAL = {
    "sgx": TEE_EVIDENCE / "sgx" / "sgx_quote_collateral.json",
    "tdx": TEE_EVIDENCE / "tdx" / "tdx_quote_collateral.json",
}
FIELDS = {  # written by hand from docs/tee.md, not imported: the file format is what is tested
    "sgx": ("mr_enclave", "mr_signer"),
    "tdx": ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_seam"),
    "sev-snp": ("measurement", "id_key_digest"),
    "nitro": ("pcr0", "pcr1", "pcr2", "pcr8"),
}
SHARED = tuple(s for s in SERVICES if s != "execution")
"""Services of one image, sharing its measurement; execution runs in an image of its own."""
HOST = "one=127.0.0.1:" + ",".join(ALL_SERVICES)
POLICY = AttestationPolicy()


def _cloister(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def _evidence_options(kind: str) -> list[str | Path]:
    options: list[str | Path] = ["--from-evidence", EVIDENCE[kind], "--kind", kind]
    if kind in COLLATERAL:
        options += ["--collateral", COLLATERAL[kind]]
    if kind == "sev-snp":
        options += ["--certs", TEE_EVIDENCE / "sev-snp"]
    return [*options, "--at", INSIDE[kind].isoformat()]


def _claims(kind: str) -> Claims:
    certs = TEE_EVIDENCE / "sev-snp" if kind == "sev-snp" else None
    return check_evidence(
        kind, EVIDENCE[kind], at=INSIDE[kind], collateral_path=COLLATERAL.get(kind), certs_dir=certs
    ).claims


def _image(kind: str, services: tuple[str, ...], values: dict[str, bytes]) -> str:
    lines = ["[[image]]", f'platform = "{kind}"', "services = [" + ", ".join(f'"{s}"' for s in services) + "]"]
    return "\n".join([*lines, *(f'{name} = "{values[name].hex()}"' for name in FIELDS[kind]), ""])


def _altered(values: dict[str, bytes], kind: str) -> dict[str, bytes]:
    first = FIELDS[kind][0]
    return {**values, first: values[first][:-1] + bytes([values[first][-1] ^ 1])}


@dataclasses.dataclass(frozen=True)
class Deployed:
    kind: str
    claims: Claims
    directory: Path

    @property
    def deployment(self) -> Deployment:
        return Deployment(self.directory / "attestation")


@pytest.fixture(scope="module", params=KINDS)
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    kind: str = request.param
    claims = _claims(kind)
    raw = {name: claims.measurements[name] for name in FIELDS[kind]}
    work = tmp_path_factory.mktemp(kind)
    measurements = work / "measurements.toml"
    measurements.write_text(_image(kind, SHARED, raw) + "\n" + _image(kind, ("execution",), _altered(raw, kind)))
    result = _cloister("deploy", "init", work / "d", "--host", HOST, "--tee", kind, "--measurements", measurements)
    assert result.exit_code == 0, result.output
    assert f"enclave_info.toml lists every service's {kind} measurements" in result.output
    return Deployed(kind, claims, work / "d")


def _mapped(claims: Claims, key: ec.EllipticCurvePrivateKey) -> QuoteBody:
    """What the attestation service endorses for this evidence, had it bound ``key``."""
    return quote_body_of(dataclasses.replace(claims, report_data=report_data_for(key.public_key())))


def _peer(
    deployment: Deployment, body: QuoteBody, key: ec.EllipticCurvePrivateKey, platform: str, name: str | None
) -> bytes:
    """A certificate carrying the report the deployment's report signer signs on ``body``, as ``name``."""
    signer_key, signer_cert = deployment.report_signer()
    now = dt.datetime.now(dt.UTC)
    report = ReportSigner(signer_key, [signer_cert], "sim").endorse(body, now, tee_backend=platform, service=name)
    return build_certificate(key, "peer", report, now, dt.timedelta(hours=1)).public_bytes(Encoding.DER)


def _verifier(deployed: Deployed) -> PeerVerifier:
    info, signers = deployed.deployment.verified_enclave_info()
    assert signers == ["dev"]
    return PeerVerifier(deployed.deployment.as_root_ca(), info, POLICY)


def test_init_writes_what_the_attestation_service_maps_the_fixture_to(deployed: Deployed) -> None:
    info, _ = deployed.deployment.verified_enclave_info()
    expected = quote_body_of(dataclasses.replace(deployed.claims, report_data=bytes(64)))
    by_name = {identity.name: identity for identity in info.identities()}
    assert set(by_name) == {f"teaclave_{s}_service" for s in SERVICES}
    for service in SHARED:
        name = f"teaclave_{service}_service"
        assert by_name[name] == EnclaveIdentity(name, expected.mr_enclave, expected.mr_signer, deployed.kind)
    execution = by_name["teaclave_execution_service"]
    assert execution.platform == deployed.kind and execution.mr_enclave != expected.mr_enclave
    assert f'platform = "{deployed.kind}"' in info.raw.decode()


@pytest.mark.parametrize("service", ["storage", "frontend"])
def test_a_report_with_those_values_is_recognised_as_the_service_it_names(deployed: Deployed, service: str) -> None:
    key = new_key()
    name = f"teaclave_{service}_service"
    der = _peer(deployed.deployment, _mapped(deployed.claims, key), key, deployed.kind, name)
    peer = _verifier(deployed).verify(der, [name])
    assert (peer.name, peer.tee_backend) == (name, deployed.kind)
    other = "teaclave_management_service"  # same image, same measurement: still not this peer
    with pytest.raises(AttestationError, match=f"peer is {name}, expected {other}"):
        _verifier(deployed).verify(der, [other])


def test_the_same_values_under_another_platform_are_refused(deployed: Deployed) -> None:
    key = new_key()
    body = _mapped(deployed.claims, key)
    for platform in (*(k for k in KINDS if k != deployed.kind), "sim", "sgx-dcap"):
        der = _peer(deployed.deployment, body, key, platform, "teaclave_storage_service")
        with pytest.raises(AttestationError, match=f"peer's {platform} measurement is not in enclave_info.toml"):
            _verifier(deployed).verify(der, ["teaclave_storage_service"])


def test_a_name_whose_listed_measurement_differs_is_refused(deployed: Deployed) -> None:
    key = new_key()
    der = _peer(deployed.deployment, _mapped(deployed.claims, key), key, deployed.kind, "teaclave_execution_service")
    with pytest.raises(
        AttestationError, match=r"certified as teaclave_execution_service, but enclave_info\.toml lists"
    ):
        _verifier(deployed).verify(der, ["teaclave_execution_service"])


def test_a_shared_measurement_without_a_certified_name_is_refused(deployed: Deployed) -> None:
    key = new_key()
    der = _peer(deployed.deployment, _mapped(deployed.claims, key), key, deployed.kind, None)
    with pytest.raises(AttestationError, match="its report names none of them"):
        _verifier(deployed).verify(der, ["teaclave_storage_service"])


def test_a_simulated_report_of_the_hardware_values_is_refused(deployed: Deployed) -> None:
    """The simulated quoting key signs any values; the attestation service then endorses them as ``sim``."""
    deployment = deployed.deployment
    key = new_key()
    body = _mapped(deployed.claims, key)
    forged = QuoteBody(3, body.mr_enclave, body.mr_signer, body.report_data).to_bytes()
    evidence = Evidence("sim", forged, deployment.sim_quoting_key().sign(forged, ec.ECDSA(hashes.SHA256())))
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = dt.datetime.now(dt.UTC)
    endorsement = Endorser(deployment, dt.timedelta(hours=1), tee_backend="sim").endorse(
        evidence, public, "storage", now
    )
    der = build_certificate(key, "peer", endorsement.report, now, dt.timedelta(hours=1)).public_bytes(Encoding.DER)
    listed_elsewhere = f"peer's sim measurement is not in enclave_info.toml: it is listed for {deployed.kind} only"
    with pytest.raises(AttestationError, match=listed_elsewhere):
        _verifier(deployed).verify(der, ["teaclave_storage_service"])


def test_changing_the_platform_or_a_measurement_breaks_the_auditor_signature(deployed: Deployed) -> None:
    deployment = deployed.deployment
    raw = deployment.enclave_info().raw
    signatures, keys = deployment.auditor_signatures(), deployment.auditor_public_keys()
    assert verify_auditor_signatures(raw, signatures, keys, required=1) == ["dev"]
    other = next(k for k in KINDS if k != deployed.kind)
    info = EnclaveInfo.parse(raw)
    first = info.identities()[0]
    tampered = [
        raw.replace(f'platform = "{deployed.kind}"'.encode(), f'platform = "{other}"'.encode(), 1),
        raw.replace(f'platform = "{deployed.kind}"\n'.encode(), b"", 1),  # back to a sim identity
        raw.replace(first.mr_enclave.hex().encode(), (bytes(31) + b"\1").hex().encode(), 1),
    ]
    for changed in tampered:
        assert changed != raw
        EnclaveInfo.parse(changed)  # still a well-formed identity file ...
        with pytest.raises(AttestationError, match="does not verify"):  # ... that no auditor signed
            verify_auditor_signatures(changed, signatures, keys, required=1)


@pytest.mark.parametrize("kind", KINDS)
def test_measure_takes_the_identities_from_verified_evidence(kind: str, tmp_path: Path) -> None:
    directory = tmp_path / "d"
    created = _cloister("deploy", "init", directory, "--host", HOST, "--tee", kind)
    assert created.exit_code == 0, created.output
    assert f"sim measurements, which never match a {kind} peer" in created.output
    result = _cloister("deploy", "measure", directory, *_evidence_options(kind), "--services", "all")
    assert result.exit_code == 0, result.output
    info, _ = Deployment(directory / "attestation").verified_enclave_info()
    expected = quote_body_of(dataclasses.replace(_claims(kind), report_data=bytes(64)))
    assert {(i.platform, i.mr_enclave, i.mr_signer) for i in info.identities()} == {
        (kind, expected.mr_enclave, expected.mr_signer)
    }
    assert len(info.identities()) == len(SERVICES)


def test_measure_replaces_only_the_services_it_names(tmp_path: Path) -> None:
    raw = {name: _claims("tdx").measurements[name] for name in FIELDS["tdx"]}
    measurements = tmp_path / "measurements.toml"
    measurements.write_text(_image("tdx", SHARED, raw) + "\n" + _image("tdx", ("execution",), _altered(raw, "tdx")))
    directory = tmp_path / "d"
    created = _cloister("deploy", "init", directory, "--host", HOST, "--tee", "tdx", "--measurements", measurements)
    assert created.exit_code == 0, created.output
    before = {i.name: i for i in Deployment(directory / "attestation").enclave_info().identities()}
    assert before["teaclave_execution_service"].mr_enclave != before["teaclave_storage_service"].mr_enclave
    result = _cloister("deploy", "measure", directory, *_evidence_options("tdx"), "--services", "execution")
    assert result.exit_code == 0, result.output
    after = {i.name: i for i in Deployment(directory / "attestation").verified_enclave_info()[0].identities()}
    storage = before["teaclave_storage_service"]
    execution = EnclaveIdentity("teaclave_execution_service", storage.mr_enclave, storage.mr_signer, "tdx")
    assert after == {**before, "teaclave_execution_service": execution}
