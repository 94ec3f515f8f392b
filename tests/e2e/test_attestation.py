"""Attested channels on a running platform: inbound rules, client-side checks, the CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_fixture_server import FixtureHTTPServer
from tee_stand_ins import (
    SNP_REPORT_DATA_OFFSET,
    StandInConfigfsTSM,
    sgx_quote,
    snp_certificate_table,
    snp_report,
    with_report_data_at,
    write_kds_answers,
)

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_access_control_service_pb2 as acpb
from cloister._proto import teaclave_access_control_service_pb2_grpc as acgrpc
from cloister._proto import teaclave_authentication_service_pb2 as aupb
from cloister._proto import teaclave_authentication_service_pb2_grpc as augrpc
from cloister._proto import teaclave_frontend_service_pb2 as fpb
from cloister._proto import teaclave_management_service_pb2_grpc as mgrpc
from cloister.attestation.certificate import TLS_NAME, new_key
from cloister.attestation.identity import open_backend
from cloister.attestation.producers import AMDKeyDistribution
from cloister.attestation.verify import PeerVerifier
from cloister.config import ATTESTATION_SERVICE, SERVICES, load_settings
from cloister.errors import AuthenticationError
from cloister.rpc import addresses
from cloister.rpc.channel import verified_credentials
from cloister.rpc.identity import obtain_identity
from cloister.rpc.runtime import attestation_policy, deployment_of
from cloister.rpc.server import INBOUND
from cloister.testing import RunningPlatform

# One harmless call per internal endpoint: (service that owns it, stub, method, request).
CALLS = {
    "storage": ("storage", cgrpc.StorageStub, "Read", cpb.ReadRequest(keys=[])),
    "management": ("management", mgrpc.TeaclaveManagementStub, "GetTask", fpb.GetTaskRequest(task_id="x")),
    "access_control": (
        "access_control",
        acgrpc.TeaclaveAccessControlStub,
        "AuthorizeApi",
        acpb.AuthorizeApiRequest(user_role="PlatformAdmin", api="x"),
    ),
    "authentication_internal": (
        "authentication",
        augrpc.TeaclaveAuthenticationInternalStub,
        "UserAuthenticate",
        aupb.UserAuthenticateRequest(),
    ),
    "scheduler": (
        "scheduler",
        cgrpc.SchedulerStub,
        "ExecutorHeartbeat",
        cpb.ExecutorHeartbeatRequest(executor=cpb.ExecutorInfo(executor_id="inbound-test"), wait_ms=0),
    ),
}


def _settings(platform: RunningPlatform):
    return load_settings(platform.state_dir.parent / "cloister.toml", {}, state_dir=platform.state_dir)


async def _call_as(platform: RunningPlatform, caller: str, endpoint: str) -> grpc.StatusCode:
    settings = _settings(platform)
    deployment = deployment_of(settings)
    identity = await obtain_identity(settings, deployment, open_backend("sim", deployment, caller), caller)
    verifier = PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), attestation_policy(settings))
    owner, stub, method, request = CALLS[endpoint]
    address = platform.platform.endpoint(endpoint)
    credentials, _ = verified_credentials(address, owner, verifier, identity)
    async with grpc.aio.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", "cloister.internal")]
    ) as channel:
        try:
            await getattr(stub(channel), method)(request, metadata=(("id", "x"), ("role", "PlatformAdmin")), timeout=10)
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.UNAUTHENTICATED and "peer" in (error.details() or ""):
                return grpc.StatusCode.UNAUTHENTICATED
            return grpc.StatusCode.OK  # the call got past the inbound check; its own answer is beside the point
    return grpc.StatusCode.OK


@pytest.mark.parametrize("endpoint", sorted(CALLS))
def test_inbound_rules_hold_for_every_caller(platform: RunningPlatform, endpoint: str) -> None:
    outcomes = {caller: asyncio.run(_call_as(platform, caller, endpoint)) for caller in SERVICES}
    allowed = {caller for caller, code in outcomes.items() if code is grpc.StatusCode.OK}
    assert allowed == set(INBOUND[endpoint])


def test_client_with_only_root_ca_and_enclave_info_verifies_public_endpoints(platform: RunningPlatform) -> None:
    """Reference §14.6, step by step, with ``cryptography`` and ``ssl`` only."""
    root = x509.load_pem_x509_certificate(platform.as_root_ca.read_bytes())
    enclave_info = tomllib.loads(platform.enclave_info.read_text())
    for endpoint, address in (
        ("authentication", platform.authentication_address),
        ("frontend", platform.frontend_address),
    ):
        host, port = address.rsplit(":", 1)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        with socket.create_connection((host, int(port))) as raw, context.wrap_socket(raw) as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        payload = json.loads(cert.extensions[0].value.value)
        signer = x509.load_der_x509_certificate(bytes(payload["certs"][0]))
        signer.verify_directly_issued_by(root)
        signer.public_key().verify(
            bytes(payload["signature"]), bytes(payload["report"]), padding.PKCS1v15(), hashes.SHA256()
        )
        quote = base64.b64decode(json.loads(bytes(payload["report"]))["isvEnclaveQuoteBody"])
        point = cert.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        assert point[0] == 4 and quote[368:432] == point[1:]
        expected = enclave_info[f"teaclave_{endpoint}_service"]
        assert quote[112:144].hex() == expected["mr_enclave"]
        assert quote[176:208].hex() == expected["mr_signer"]


def test_attest_command(platform: RunningPlatform) -> None:
    base = [sys.executable, "-m", "cloister", "attest", "--state-dir", str(platform.state_dir)]
    ok = subprocess.run([*base, platform.frontend_address, "--service", "frontend"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "teaclave_frontend_service" in ok.stdout and "SIMULATED" in ok.stdout and "VERIFIED" in ok.stdout
    wrong = subprocess.run([*base, platform.frontend_address, "--service", "storage"], capture_output=True, text=True)
    assert wrong.returncode == 1
    assert "peer is teaclave_frontend_service" in wrong.stderr.replace("\n", " ")


async def _endorse(platform: RunningPlatform, request: cpb.EndorseRequest) -> str:
    settings = _settings(platform)
    credentials = grpc.ssl_channel_credentials(root_certificates=deployment_of(settings).as_root_ca_pem())
    address = addresses.resolve(settings, ATTESTATION_SERVICE)
    async with grpc.aio.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", TLS_NAME)]
    ) as channel:
        try:
            await cgrpc.AttestationStub(channel).Endorse(request, timeout=10)
        except grpc.RpcError as error:
            return error.details() or ""
    return "endorsed"


def test_endorse_carries_what_verifying_hardware_evidence_needs(platform: RunningPlatform) -> None:
    """Intel's collateral and the SNP certificate table reach the attestation service, which reads them.

    No time-independent evidence could pass (the fixtures expire and bind other keys; see
    tests/unit/attestation/test_hardware_endorsement.py), so each request is refused, and the
    reason shows whether the field arrived.
    """
    public_key = new_key().public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def request(kind: str, quote: bytes, **fields: bytes) -> cpb.EndorseRequest:
        return cpb.EndorseRequest(tee_backend=kind, quote=quote, public_key=public_key, service="storage", **fields)

    outcomes = [
        (request("sgx", sgx_quote()), "SGX evidence came without Intel's PCS collateral"),
        (request("sgx", sgx_quote(), collateral=b"{}"), "not dcap-qvl's QuoteCollateralV3 JSON"),
        (request("sev-snp", snp_report()), "came without the host's certificate table"),
        (request("sev-snp", snp_report(), certificates=bytes(24)), "holds no VCEK or VLEK"),
    ]
    for sent, reason in outcomes:
        assert reason in asyncio.run(_endorse(platform, sent))


def test_a_service_on_snp_sends_the_hosts_certificate_table(platform: RunningPlatform, tmp_path: Path) -> None:
    """A service's SNP evidence reaches the attestation service with the VCEK the host supplied.

    The configfs-tsm stand-in (``tee_stand_ins``: a directory, not a TEE) answers with the real
    report carrying this key's report data, which breaks AMD's signature; the attestation service
    gets as far as checking that signature under the VCEK from the certificate table, which it
    could not without the table (or, after 2030-04-03, refuses the expired VCEK).
    The caller sees the refusal as an authentication error.
    """
    settings = _settings(platform)
    deployment = deployment_of(settings)
    answer = with_report_data_at(snp_report(), SNP_REPORT_DATA_OFFSET)
    stand_in = StandInConfigfsTSM(tmp_path, "sev_guest", answer, auxblob=snp_certificate_table())
    backend = stand_in.backend("sev-snp")
    with pytest.raises(AuthenticationError, match=r"signature does not verify under the VCEK|VCEK is valid from"):
        asyncio.run(obtain_identity(settings, deployment, backend, "storage"))


def test_a_service_on_snp_without_a_host_table_sends_the_vcek_from_kds(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    """A host that supplies no certificate table: the backend fetches the VCEK by the report's chip
    id and TCB from a stand-in of AMD's KDS (an HTTP server on a loopback port serving the fixture
    chip's real VCEK, not AMD's), and the attestation service gets as far as the report's
    signature under it, as in the test above.
    """
    settings = _settings(platform)
    deployment = deployment_of(settings)
    answer = with_report_data_at(snp_report(), SNP_REPORT_DATA_OFFSET)
    write_kds_answers(tmp_path / "kds")
    stand_in = StandInConfigfsTSM(tmp_path / "tsm", "sev_guest", answer, auxblob=None)
    with FixtureHTTPServer(tmp_path / "kds") as kds:
        backend = stand_in.backend("sev-snp", vceks=AMDKeyDistribution(kds.url("")))
        with pytest.raises(AuthenticationError, match=r"signature does not verify under the VCEK|VCEK is valid from"):
            asyncio.run(obtain_identity(settings, deployment, backend, "storage"))
        assert [request.path.split("?")[0] for request in kds.requests] == [
            f"/vcek/v1/Milan/{snp_report()[0x1A0:0x1E0].hex()}"
        ]
