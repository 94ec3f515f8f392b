"""A service whose evidence the attestation service refuses forgets the collateral its backend cached.

The attestation service is a real gRPC server over TLS, built as the service builds it; the
service side is ``obtain_identity`` with a backend that makes simulated evidence, for the right
key or (when told) for another one, and counts how often it was told to forget.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from async_helpers import run

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister.attestation.backends import Evidence, TEEBackend
from cloister.attestation.certificate import new_key, report_data_for
from cloister.attestation.deployment import provision
from cloister.attestation.identity import open_backend
from cloister.config import ATTESTATION_SERVICE, SERVICES, load_settings
from cloister.errors import AuthenticationError
from cloister.rpc.identity import obtain_identity
from cloister.rpc.server import start_server
from cloister.services.attestation.admission import EndorsementQueue
from cloister.services.attestation.endorser import Endorser
from cloister.services.attestation.service import tls_credentials
from cloister.services.attestation.servicer import AttestationServicer


class CountingBackend(TEEBackend):
    name = "sim"
    simulated = True

    def __init__(self, inner: TEEBackend) -> None:
        self.inner = inner
        self.wrong_key = False
        self.forgotten = 0

    def evidence(self, report_data: bytes) -> Evidence:
        if self.wrong_key:
            report_data = report_data_for(new_key().public_key())
        return self.inner.evidence(report_data)

    def forget_endorsements(self) -> None:
        self.forgotten += 1


def test_a_refusal_makes_the_backend_forget_and_an_endorsement_does_not(tmp_path: Path) -> None:
    deployment = provision(tmp_path / "state" / "attestation", SERVICES)
    queue = EndorsementQueue(Endorser(deployment, dt.timedelta(hours=1)), workers=1, waiting=1)
    backend = CountingBackend(open_backend("sim", deployment, "storage"))

    async def body() -> None:
        base = load_settings(state_dir=tmp_path / "state")
        server, port = await start_server(
            ATTESTATION_SERVICE,
            "127.0.0.1:0",
            tls_credentials(deployment),
            None,
            base.rpc,
            [lambda s: cgrpc.add_AttestationServicer_to_server(AttestationServicer(queue), s)],
        )
        try:
            settings = load_settings(
                env={"CLOISTER_ENDPOINTS__ATTESTATION": f"127.0.0.1:{port}"}, state_dir=tmp_path / "state"
            )
            assert (await obtain_identity(settings, deployment, backend, "storage")).service == "storage"
            assert backend.forgotten == 0
            backend.wrong_key = True
            with pytest.raises(AuthenticationError, match="does not bind the key"):
                await obtain_identity(settings, deployment, backend, "storage")
            assert backend.forgotten == 1
        finally:
            await server.stop(None)
            queue.close()

    run(body)
