"""The sev-snp backend fetches its VCEK from a stand-in of AMD's KDS (not AMD's) when the host supplies none.

The stand-in is a real HTTP server on an ephemeral loopback port serving the fixture chip's real
VCEK where KDS serves it (``tee_stand_ins.write_kds_answers``); the report comes from the
configfs-tsm stand-in with no ``auxblob``, as from a host without a certificate table. Asked for
the fixture report's own report data, the backend hands on the genuine report, which the
attestation service verifies with the fetched VCEK and refuses only for binding another key.
"""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from http_fixture_server import FixtureHTTPServer
from shared_fixtures import TEE_EVIDENCE
from tee_stand_ins import (
    SNP_REPORT_DATA_OFFSET,
    StandInConfigfsTSM,
    snp_certificate_table,
    snp_chip_id,
    snp_report,
    unchanged,
    write_kds_answers,
)

from cloister.attestation.certificate import new_key
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.hardware.snp import load_amd_certificate
from cloister.attestation.hardware.tee_policy import TeePolicy
from cloister.attestation.producers import AMDKeyDistribution
from cloister.attestation.producers.amd_kds import kds_queries
from cloister.attestation.producers.layouts import snp_certificate_table as build_table
from cloister.attestation.producers.layouts import snp_certificates
from cloister.config import SERVICES
from cloister.errors import AttestationError, ConfigurationError, UnavailableError
from cloister.services.attestation.endorser import Endorser

IN_WINDOW = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)  # the Milan chain: 2023-04-03 .. 2030-04-03
REPORT_DATA = slice(SNP_REPORT_DATA_OFFSET, SNP_REPORT_DATA_OFFSET + 64)
VCEK_TCB_OIDS = {  # AMD's VCEK specification: the TCB each VCEK certifies
    "blSPL": "1.3.6.1.4.1.3704.1.3.1",
    "teeSPL": "1.3.6.1.4.1.3704.1.3.2",
    "snpSPL": "1.3.6.1.4.1.3704.1.3.3",
    "ucodeSPL": "1.3.6.1.4.1.3704.1.3.8",
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("deployment"), SERVICES)


def _vcek() -> bytes:
    return (TEE_EVIDENCE / "sev-snp" / "vcek_milan.der").read_bytes()


def _certified_tcb() -> dict[str, int]:
    """What the fixture VCEK certifies, read from its extensions: what KDS must be asked for."""
    certificate = load_amd_certificate(_vcek())
    levels = {}
    for name, oid in VCEK_TCB_OIDS.items():
        value = certificate.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
        assert isinstance(value, x509.UnrecognizedExtension)
        levels[name] = int.from_bytes(value.value[2:], "big")  # a DER INTEGER
    return levels


def test_a_report_without_a_host_table_goes_with_the_vcek_from_kds(tmp_path: Path, deployment: Deployment) -> None:
    report = snp_report()
    path = write_kds_answers(tmp_path / "kds")
    tsm = StandInConfigfsTSM(tmp_path / "tsm", "sev_guest", unchanged(report), auxblob=None)
    with FixtureHTTPServer(tmp_path / "kds") as kds:
        vceks = AMDKeyDistribution(kds.url(""))
        backend = tsm.backend("sev-snp", vceks=vceks)
        evidence = backend.evidence(report[REPORT_DATA])
        again = backend.evidence(report[REPORT_DATA])
        asked = [request.path for request in kds.requests]
    assert snp_certificates(evidence.certificates) == {"vcek": _vcek()}
    assert again.certificates == evidence.certificates
    assert len(asked) == 1 and vceks.fetches == 1  # cached: the chip and its TCB did not change
    url = urlsplit(asked[0])
    assert url.path == path  # Milan first: a version 2 report names no product
    assert {name: int(value) for name, value in parse_qsl(url.query)} == _certified_tcb()
    public = (
        new_key().public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    endorser = Endorser(deployment, dt.timedelta(hours=1), TeePolicy(), tee_backend="sev-snp")
    with pytest.raises(AttestationError, match="report data does not bind the key"):
        endorser.endorse(evidence, public, "storage", IN_WINDOW)


def test_the_host_table_is_used_as_it_is_when_it_holds_a_vcek(tmp_path: Path) -> None:
    report = snp_report()
    table = snp_certificate_table()
    tsm = StandInConfigfsTSM(tmp_path / "tsm", "sev_guest", unchanged(report), auxblob=table)
    with FixtureHTTPServer(tmp_path) as kds:
        evidence = tsm.backend("sev-snp", vceks=AMDKeyDistribution(kds.url(""))).evidence(report[REPORT_DATA])
        assert kds.requests == []
    assert evidence.certificates == table


def test_a_host_table_without_a_vcek_gets_it_added(tmp_path: Path) -> None:
    report = snp_report()
    ask = snp_certificates(snp_certificate_table())["ask"]
    tsm = StandInConfigfsTSM(tmp_path / "tsm", "sev_guest", unchanged(report), auxblob=build_table({"ask": ask}))
    write_kds_answers(tmp_path / "kds")
    with FixtureHTTPServer(tmp_path / "kds") as kds:
        evidence = tsm.backend("sev-snp", vceks=AMDKeyDistribution(kds.url(""))).evidence(report[REPORT_DATA])
    assert snp_certificates(evidence.certificates) == {"vcek": _vcek(), "ask": ask}


def test_kds_without_the_chip_is_refused_after_each_product(tmp_path: Path) -> None:
    with FixtureHTTPServer(tmp_path) as kds:
        with pytest.raises(
            AttestationError, match=r"AMD's KDS has no VCEK for this chip: .*Milan.*Genoa.* answered 404"
        ):
            AMDKeyDistribution(kds.url("")).vcek_for(snp_report())
        assert [urlsplit(r.path).path.split("/")[3] for r in kds.requests] == ["Milan", "Genoa"]


def test_a_version_3_report_names_its_product(tmp_path: Path) -> None:
    report = bytearray(snp_report())
    report[0:4] = (3).to_bytes(4, "little")
    report[0x188:0x18B] = bytes([0x1A, 0x02, 0x00])  # CPUID family 1Ah, model 02h: Turin
    (query,) = kds_queries(bytes(report))
    assert query.startswith(f"/vcek/v1/Turin/{snp_chip_id()[:8].hex()}?fmcSPL=")
    report[0x188:0x18B] = bytes([0x19, 0x11, 0x01])  # family 19h, model 11h: Genoa
    assert kds_queries(bytes(report)) == [kds_queries(snp_report())[1]]


def test_a_masked_chip_id_cannot_be_looked_up() -> None:
    report = bytearray(snp_report())
    report[0x1A0:0x1E0] = bytes(64)
    with pytest.raises(AttestationError, match=r"chip id is masked.*the host must supply a VLEK"):
        AMDKeyDistribution("https://kds.example").vcek_for(bytes(report))


def test_garbage_and_oversized_answers_are_refused(tmp_path: Path) -> None:
    path = write_kds_answers(tmp_path)
    with FixtureHTTPServer(tmp_path) as kds:
        (tmp_path / path.lstrip("/")).write_bytes(b"<html>rate limited</html>")
        with pytest.raises(
            AttestationError, match=rf"{kds.url(path)}\?.* answered something that is not a certificate"
        ):
            AMDKeyDistribution(kds.url("")).vcek_for(snp_report())
        (tmp_path / path.lstrip("/")).write_bytes(_vcek() * 20)
        with pytest.raises(AttestationError, match=r"answered the VCEK of .*more than the 16384 bytes allowed"):
            AMDKeyDistribution(kds.url("")).vcek_for(snp_report())
        kds.switches.status[path] = 429
        with pytest.raises(UnavailableError, match="it answered HTTP 429; try again later"):
            AMDKeyDistribution(kds.url("")).vcek_for(snp_report())


def test_kds_down_or_not_https_is_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        UnavailableError, match=rf"could not fetch the VCEK from http://127.0.0.1:{port}/vcek/v1/Milan/"
    ):
        AMDKeyDistribution(f"http://127.0.0.1:{port}", timeout_seconds=2).vcek_for(snp_report())
    with pytest.raises(ConfigurationError, match=r"\[attestation\] amd_kds_url 'http://kdsintf.amd.com' must be"):
        AMDKeyDistribution("http://kdsintf.amd.com")


def test_certificate_table_round_trip() -> None:
    table = build_table({"vcek": b"V" * 10, "ask": b"A" * 7})
    assert snp_certificates(table) == {"vcek": b"V" * 10, "ask": b"A" * 7}
    assert snp_certificates(build_table({})) == {}
