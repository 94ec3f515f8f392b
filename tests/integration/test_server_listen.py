"""A service that cannot listen says why in one error naming its setting (logged, not a traceback),
for the log ``cloister up`` points to and for ``cloister service`` run on its own."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest
from async_helpers import run
from attestation_helpers import make_identity

from cloister.attestation.deployment import provision
from cloister.config import SERVICES, RPCSettings
from cloister.errors import ConfigurationError
from cloister.rpc.server import start_server


def test_a_taken_port_is_a_configuration_error_naming_the_setting(tmp_path: Path) -> None:
    identity = make_identity(provision(tmp_path / "deployment", SERVICES), "frontend")
    credentials = grpc.ssl_server_credentials([(identity.private_key_pem, identity.server_certificate_pem)])

    async def body() -> None:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            address = f"127.0.0.1:{holder.getsockname()[1]}"
            with pytest.raises(ConfigurationError) as refused:
                await start_server("frontend", address, credentials, None, RPCSettings(), [])
        assert refused.value.message == (
            f"cannot listen on {address}: the port is in use or the host is not this machine's; "
            "change [endpoints] frontend (CLOISTER_ENDPOINTS__FRONTEND)"
        )

    run(body)
