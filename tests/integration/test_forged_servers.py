"""A client refuses a server whose attestation does not hold, before sending it a single byte."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import tempfile
import threading
from pathlib import Path

import pytest
from attestation_helpers import make_identity
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloister.attestation.certificate import build_certificate, endorsed_report_of, new_key
from cloister.attestation.deployment import Deployment, provision
from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo
from cloister.attestation.report import EndorsedReport
from cloister.config import SERVICES
from cloister.errors import AttestationError
from cloister.sdk import FrontendService


class RecordingServer:
    """A TLS server that counts the application bytes clients send it."""

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        self.received = 0
        self.connections = 0
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "server.pem")
            Path(path).write_bytes(key_pem + cert_pem)
            self._context.load_cert_chain(path)
        self._context.set_alpn_protocols(["h2"])
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            try:
                with self._context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(1.0)
                    while data := tls.recv(65536):
                        self.received += len(data)
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return provision(tmp_path_factory.mktemp("deployment"), SERVICES)


def _pem(key, cert: x509.Certificate) -> tuple[bytes, bytes]:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _with_report(report: EndorsedReport) -> tuple[bytes, bytes]:
    key = new_key()
    now = dt.datetime.now(dt.UTC)
    return _pem(key, build_certificate(key, "teaclave_frontend_service", report, now, dt.timedelta(hours=1)))


def _genuine_report(deployment: Deployment) -> EndorsedReport:
    identity = make_identity(deployment, "frontend")
    return endorsed_report_of(x509.load_pem_x509_certificate(identity.server_certificate_pem))


def _forged_signature(deployment: Deployment) -> tuple[bytes, bytes]:
    real = _genuine_report(deployment)
    return _with_report(EndorsedReport(real.report, bytes(len(real.signature)), real.certs))


def _other_key(deployment: Deployment) -> tuple[bytes, bytes]:
    return _with_report(_genuine_report(deployment))


def _other_deployment(deployment: Deployment) -> tuple[bytes, bytes]:
    other = provision(deployment.directory.parent / "other-deployment", SERVICES)
    identity = make_identity(other, "frontend")
    return identity.private_key_pem, identity.server_certificate_pem


def _wrong_service(deployment: Deployment) -> tuple[bytes, bytes]:
    identity = make_identity(deployment, "storage")
    return identity.private_key_pem, identity.server_certificate_pem


@pytest.fixture
def genuine_enclave_info(deployment: Deployment) -> Path:
    return deployment.enclave_info_path


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (_forged_signature, "signature"),
        (_other_key, "report data"),
        (_other_deployment, "chain"),
        (_wrong_service, "peer is teaclave_storage_service"),
    ],
)
def test_forged_server_is_refused_and_hears_nothing(deployment: Deployment, forge, message: str) -> None:
    server = RecordingServer(*forge(deployment))
    try:
        with pytest.raises(AttestationError, match=message):
            FrontendService(server.address, deployment.as_root_ca_path, deployment.enclave_info_path)
    finally:
        server.close()
    assert server.connections >= 1
    assert server.received == 0


def test_measurement_missing_from_identity_file_is_refused(deployment: Deployment, tmp_path: Path) -> None:
    info = tmp_path / "enclave_info.toml"
    info.write_bytes(EnclaveInfo.render([EnclaveIdentity("teaclave_frontend_service", bytes(32), bytes(32))]))
    identity = make_identity(deployment, "frontend")
    server = RecordingServer(identity.private_key_pem, identity.server_certificate_pem)
    try:
        with pytest.raises(AttestationError, match="not in enclave_info"):
            FrontendService(server.address, deployment.as_root_ca_path, info)
    finally:
        server.close()
    assert server.received == 0


def test_expired_report_is_refused(deployment: Deployment) -> None:
    identity = make_identity(deployment, "frontend", lifetime=dt.timedelta(hours=48))
    server = RecordingServer(identity.private_key_pem, identity.server_certificate_pem)
    from cloister.attestation.report import AttestationPolicy

    strict = AttestationPolicy(max_report_age=dt.timedelta(microseconds=1))
    try:
        with pytest.raises(AttestationError, match="old"):
            FrontendService(server.address, deployment.as_root_ca_path, deployment.enclave_info_path, policy=strict)
    finally:
        server.close()
    assert server.received == 0


def test_genuine_server_passes_the_same_checks(deployment: Deployment) -> None:
    identity = make_identity(deployment, "frontend")
    server = RecordingServer(identity.private_key_pem, identity.server_certificate_pem)
    try:
        client = FrontendService(server.address, deployment.as_root_ca_path, deployment.enclave_info_path)
        assert client.attested_identity.name == "teaclave_frontend_service"
        client.close()
    finally:
        server.close()
