"""The sgx and tdx backends fetch Intel's collateral for their quotes, from a stand-in PCCS (not Intel's).

The stand-in is a real HTTP server on an ephemeral loopback port (``http_fixture_server``) that
answers as a PCCS of Intel's v4 API would, with the real collateral of the shared fixtures
(``tee_stand_ins.write_pccs_answers``). The quotes come from the configfs-tsm and Gramine
stand-ins. The backend is asked for the fixture quote's own report data, so the quote it hands on
is the genuine, hardware-signed one: the attestation service verifies it with the fetched
collateral at a time inside the fixture's window, a lenient policy accepts it, and it is refused
only because it was made for another key than the one to be certified (as in
``test_hardware_endorsement.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import ssl
from pathlib import Path

import pytest
from attestation_helpers import self_signed_certificate
from cryptography.hazmat.primitives import serialization
from http_fixture_server import FixtureHTTPServer, ServerSwitches
from tee_stand_ins import (
    StandInConfigfsTSM,
    sgx_quote,
    stand_in_gramine,
    tdx_quote,
    unchanged,
    write_pccs_answers,
)

from cloister.attestation.backends import Evidence
from cloister.attestation.certificate import new_key
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.hardware.claims import TCBStatus
from cloister.attestation.hardware.evidence import verify_evidence
from cloister.attestation.hardware.tee_policy import TeePolicy
from cloister.attestation.identity import open_backend
from cloister.attestation.producers import EndorsementSources, IntelCollateral, open_hardware_backend
from cloister.attestation.producers.layouts import sgx_report_data, tdx_report_data
from cloister.config import INTEL_PCS_URL, SERVICES, load_settings
from cloister.errors import AttestationError, ConfigurationError, UnavailableError
from cloister.services.attestation.endorser import Endorser

IN_WINDOW = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)  # SGX and TDX collateral: 2025-06-19 .. 2025-07-19
TDX_NOT_AFTER = dt.datetime(2025, 7, 19, 10, 0, 35, tzinfo=dt.UTC)  # its QE identity's nextUpdate
LENIENT = TeePolicy(
    min_tcb_status=TCBStatus.OUT_OF_DATE,
    tolerated_advisories=frozenset({"INTEL-SA-00289", "INTEL-SA-00615"}),
    allow_debug=True,
)
QUOTES = {"sgx": sgx_quote, "tdx": tdx_quote}
REQUESTS = 4  # PCK CRL, TCB info, QE identity, root CA CRL


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("deployment"), SERVICES)


def _pccs(root: Path, kind: str, **switches: object) -> FixtureHTTPServer:
    headers = write_pccs_answers(root, kind)
    return FixtureHTTPServer(root, ServerSwitches(headers=headers, **switches))  # type: ignore[arg-type]


def _public_key() -> bytes:
    return (
        new_key().public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _collateral(server: FixtureHTTPServer, at: dt.datetime = IN_WINDOW, **options: float) -> IntelCollateral:
    return IntelCollateral(server.url(""), clock=lambda: at, **options)


def test_tdx_backend_sends_collateral_the_attestation_service_verifies(tmp_path: Path, deployment: Deployment) -> None:
    quote = tdx_quote()
    tsm = StandInConfigfsTSM(tmp_path / "sys" / "kernel" / "config" / "tsm" / "report", "tdx_guest", unchanged(quote))
    with _pccs(tmp_path / "pccs", "tdx") as pccs:
        backend = tsm.backend("tdx", collateral=IntelCollateral(pccs.url("")))
        evidence = backend.evidence(tdx_report_data(quote))
        asked = [request.path for request in pccs.requests]
    assert evidence.quote == quote and evidence.collateral
    assert asked == [
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
        "/tdx/certification/v4/tcb?fmspc=B0C06F000000",  # the FMSPC and CA of the quote's PCK certificate
        "/tdx/certification/v4/qe/identity?update=standard",
        "/sgx/certification/v4/rootcacrl",
    ]
    _verified_then_refused_for_the_key(deployment, evidence, "tdx")


def test_sgx_backend_opened_from_settings_sends_collateral(tmp_path: Path, deployment: Deployment) -> None:
    quote = sgx_quote()
    with (
        stand_in_gramine(tmp_path / "root" / "dev" / "attestation", unchanged(quote)),
        _pccs(tmp_path / "pccs", "sgx") as pccs,
    ):
        settings = load_settings(
            env={"CLOISTER_ATTESTATION__PCCS_URL": pccs.url(""), "CLOISTER_TEE_BACKEND": "sgx"},
            state_dir=tmp_path / "state",
        )
        sources = EndorsementSources.from_settings(settings.attestation)
        backend = open_backend("sgx", deployment, "storage", devices_root=tmp_path / "root", sources=sources)
        evidence = backend.evidence(sgx_report_data(quote))
        assert pccs.requests[1].path == "/sgx/certification/v4/tcb?fmspc=00A067110000"
    _verified_then_refused_for_the_key(deployment, evidence, "sgx")


def _verified_then_refused_for_the_key(deployment: Deployment, evidence: Evidence, kind: str) -> None:
    claims = verify_evidence(evidence, at=IN_WINDOW, quoting_public_key=deployment.sim_quoting_public_key())
    assert claims.platform == kind
    expected = TCBStatus.UP_TO_DATE if kind == "tdx" else TCBStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED
    assert claims.tcb_status is expected
    with pytest.raises(AttestationError, match="report data does not bind the key"):
        Endorser(deployment, dt.timedelta(hours=1), LENIENT, tee_backend=kind).endorse(
            evidence,
            _public_key(),
            "storage",
            IN_WINDOW,
        )
    # The same evidence without the collateral is what the backends sent before: refused.
    with pytest.raises(AttestationError, match="without Intel's PCS collateral"):
        verify_evidence(
            dataclasses.replace(evidence, collateral=b""),
            at=IN_WINDOW,
            quoting_public_key=deployment.sim_quoting_public_key(),
        )


def test_collateral_is_cached_until_near_its_end_and_forgotten_on_refusal(tmp_path: Path) -> None:
    now = [IN_WINDOW]
    with _pccs(tmp_path, "tdx") as pccs:
        source = IntelCollateral(pccs.url(""), clock=lambda: now[0])
        first = source.for_quote(tdx_quote())
        assert source.for_quote(tdx_quote()) == first
        assert (source.fetches, len(pccs.requests)) == (1, REQUESTS)
        source.forget()  # what a service does when the attestation service refused its evidence
        source.for_quote(tdx_quote())
        assert (source.fetches, len(pccs.requests)) == (2, 2 * REQUESTS)
        now[0] = IN_WINDOW + dt.timedelta(hours=23)
        source.for_quote(tdx_quote())
        assert source.fetches == 2
        now[0] = IN_WINDOW + dt.timedelta(days=1, seconds=1)  # a day after the last fetch
        source.for_quote(tdx_quote())
        assert source.fetches == 3
        now[0] = TDX_NOT_AFTER - dt.timedelta(minutes=30)  # within an hour of the earliest nextUpdate
        source.for_quote(tdx_quote())
        assert source.fetches == 4


def test_cached_collateral_serves_while_the_pccs_is_down_but_only_while_valid(tmp_path: Path) -> None:
    now = [IN_WINDOW]
    with _pccs(tmp_path, "tdx") as pccs:
        source = IntelCollateral(pccs.url(""), clock=lambda: now[0])
        cached = source.for_quote(tdx_quote())
        pccs.switches.status["/tdx/certification/v4/tcb"] = 503
        now[0] = TDX_NOT_AFTER - dt.timedelta(minutes=10)
        assert source.for_quote(tdx_quote()) == cached
        now[0] = TDX_NOT_AFTER + dt.timedelta(seconds=1)
        with pytest.raises(
            UnavailableError, match=r"/tdx/certification/v4/tcb\?fmspc=B0C06F000000: it answered HTTP 503"
        ):
            source.for_quote(tdx_quote())


def test_a_pccs_that_is_down_is_named(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on any more
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = IntelCollateral(f"http://127.0.0.1:{port}", timeout_seconds=2)
    with pytest.raises(UnavailableError, match=rf"could not fetch the PCK CRL from http://127.0.0.1:{port}/sgx/"):
        source.for_quote(sgx_quote())


def test_a_pccs_that_never_answers_times_out(tmp_path: Path) -> None:
    with _pccs(tmp_path, "sgx", hang={"/sgx/certification/v4/tcb"}) as pccs:
        source = _collateral(pccs, timeout_seconds=0.3)
        with pytest.raises(UnavailableError, match=r"could not fetch the TCB info from .*: no answer within 0.3 s"):
            source.for_quote(sgx_quote())


def test_a_pccs_without_the_platform_answers_404(tmp_path: Path) -> None:
    with (
        FixtureHTTPServer(tmp_path) as empty,
        pytest.raises(AttestationError, match=r"answered HTTP 404 \(not found\) for the PCK CRL"),
    ):
        _collateral(empty).for_quote(sgx_quote())
    with (
        _pccs(tmp_path / "pccs", "tdx") as pccs,  # serves TDX collateral only
        pytest.raises(AttestationError, match=r"/sgx/certification/v4/tcb\?fmspc=00A067110000 answered HTTP 404"),
    ):
        _collateral(pccs).for_quote(sgx_quote())


@pytest.mark.parametrize("announce_length", [True, False])
def test_an_oversized_answer_is_refused(tmp_path: Path, announce_length: bool) -> None:
    with _pccs(tmp_path, "sgx", announce_length=announce_length) as pccs:
        (tmp_path / "sgx" / "certification" / "v4" / "tcb").write_bytes(b"{" * (1024 * 1024 + 1))
        with pytest.raises(AttestationError, match=r"/tcb\?fmspc=00A067110000 answered the TCB info of .*1048576"):
            _collateral(pccs).for_quote(sgx_quote())


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("sgx/certification/v4/tcb", b"<html>maintenance</html>", "not Intel's signed tcbInfo with its signature"),
        ("sgx/certification/v4/tcb", b'{"tcbInfo": {"nextUpdate": 1}, "signature": "00"}', "signed tcbInfo"),
        ("sgx/certification/v4/tcb", b'{"tcbInfo": {}, "signature": "00"} trailing', "signed tcbInfo"),
        ("sgx/certification/v4/qe/identity", b'{"enclaveIdentity": {}, "signature": "zz"}', "signed enclaveIdentity"),
        ("sgx/certification/v4/pckcrl", b"\x30\x03garbage", "not a CRL"),
        ("sgx/certification/v4/rootcacrl", b"c0ffee", "not a CRL"),
    ],
)
def test_a_garbage_answer_is_refused_naming_the_url(tmp_path: Path, path: str, body: bytes, message: str) -> None:
    with _pccs(tmp_path, "sgx") as pccs:
        (tmp_path / path).write_bytes(body)
        with pytest.raises(AttestationError, match=message) as refused:
            _collateral(pccs).for_quote(sgx_quote())
        assert pccs.url(path) in refused.value.message


def test_a_missing_or_garbage_issuer_chain_is_refused(tmp_path: Path) -> None:
    with _pccs(tmp_path, "sgx") as pccs:
        pccs.switches.headers["/sgx/certification/v4/tcb"] = {}
        with pytest.raises(AttestationError, match="answered without the TCB-Info-Issuer-Chain header"):
            _collateral(pccs).for_quote(sgx_quote())
        pccs.switches.headers["/sgx/certification/v4/tcb"] = {"TCB-Info-Issuer-Chain": "not%20PEM"}
        with pytest.raises(AttestationError, match="TCB-Info-Issuer-Chain header is not a PEM certificate chain"):
            _collateral(pccs).for_quote(sgx_quote())


def test_redirects_are_not_followed(tmp_path: Path) -> None:
    with _pccs(tmp_path, "sgx") as pccs:
        pccs.switches.redirects["/sgx/certification/v4/pckcrl"] = "https://elsewhere.example/crl"
        with pytest.raises(AttestationError, match=r"with a redirect \(HTTP 302\), which is not followed"):
            _collateral(pccs).for_quote(sgx_quote())
        assert len(pccs.requests) == 1


@pytest.mark.parametrize("url", ["http://pccs.example:8081", "http://10.0.0.5", "ftp://pccs.example", "pccs.example"])
def test_a_remote_url_without_https_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="must be an https URL"):
        IntelCollateral(url)
    with pytest.raises(ConfigurationError, match=r"\[attestation\] pccs_url must be"):
        load_settings(env={"CLOISTER_ATTESTATION__PCCS_URL": url}, state_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=r"\[attestation\] amd_kds_url must be"):
        load_settings(env={"CLOISTER_ATTESTATION__AMD_KDS_URL": url}, state_dir=tmp_path)


def test_settings_take_https_loopback_http_or_nothing(tmp_path: Path) -> None:
    assert load_settings(state_dir=tmp_path).attestation.pccs_url == INTEL_PCS_URL
    for url in ("https://pccs.example:8081/", "http://127.0.0.1:8081", "http://[::1]:8081", "http://localhost", ""):
        settings = load_settings(env={"CLOISTER_ATTESTATION__PCCS_URL": url}, state_dir=tmp_path)
        assert settings.attestation.pccs_url == url.rstrip("/")
    disabled = load_settings(env={"CLOISTER_ATTESTATION__PCCS_URL": ""}, state_dir=tmp_path)
    assert EndorsementSources.from_settings(disabled.attestation).pccs_url == ""


def test_without_a_pccs_no_collateral_is_sent(tmp_path: Path) -> None:
    quote = sgx_quote()
    with stand_in_gramine(tmp_path / "dev" / "attestation", unchanged(quote)):
        backend = open_hardware_backend("sgx", devices_root=tmp_path, sources=EndorsementSources(pccs_url=""))
        assert backend.evidence(sgx_report_data(quote)).collateral == b""


def test_the_collateral_is_dcap_qvl_json_with_the_signed_documents_byte_for_byte(tmp_path: Path) -> None:
    with _pccs(tmp_path, "sgx") as pccs:
        fetched = json.loads(_collateral(pccs).for_quote(sgx_quote()))
    served = (tmp_path / "sgx" / "certification" / "v4" / "tcb").read_text()
    assert served.startswith('{"tcbInfo":' + fetched["tcb_info"] + ',"signature":')


def test_a_pccs_whose_certificate_no_public_ca_signed_is_refused(tmp_path: Path) -> None:
    """https is checked against the public CAs: a stand-in with a self-signed certificate is not trusted."""
    key = new_key()
    certificate = self_signed_certificate(key, "127.0.0.1", ip="127.0.0.1")
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = _pccs(tmp_path / "pccs", "sgx")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    refused = (
        r"could not fetch the PCK CRL from https://127.0.0.1:.*(CERTIFICATE_VERIFY_FAILED|certificate verify failed)"
    )
    with server, pytest.raises(UnavailableError, match=refused):
        IntelCollateral(f"https://127.0.0.1:{server.port}", timeout_seconds=5).for_quote(sgx_quote())
