"""``cloister status``: ask every endpoint's gRPC health service, check the execution process."""

from __future__ import annotations

import os

from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloister.attestation.deployment import Deployment
from cloister.attestation.identity import create_identity
from cloister.attestation.verify import PeerVerifier
from cloister.config import ENDPOINTS, Settings
from cloister.errors import CloisterError
from cloister.rpc import addresses
from cloister.rpc.channel import SyncPeer

_SERVICE_OF = {"authentication_api": "authentication", "authentication_internal": "authentication"}


def check_all(settings: Settings) -> dict[str, tuple[bool, str]]:
    results: dict[str, tuple[bool, str]] = {}
    try:
        deployment = Deployment(settings.attestation_dir)
        verifier = PeerVerifier(deployment.as_root_ca(), deployment.enclave_info())
        identity = create_identity(deployment, "status", settings.tee_backend)
    except CloisterError as exc:
        return {name: (False, exc.message) for name in (*ENDPOINTS, "execution")}
    for endpoint in ENDPOINTS:
        results[endpoint] = _check_endpoint(settings, endpoint, verifier, identity)
    pid = addresses.ready_pid(settings, "execution")
    results["execution"] = (pid is not None and _alive(pid), f"pid {pid}" if pid else "not running")
    return results


def _check_endpoint(settings: Settings, endpoint: str, verifier: PeerVerifier, identity) -> tuple[bool, str]:
    try:
        address = addresses.resolve(settings, endpoint)
    except CloisterError as exc:
        return False, exc.message
    peer = SyncPeer(_SERVICE_OF.get(endpoint, endpoint), address, verifier, identity, settings.rpc)
    try:
        response = peer.call(health_pb2_grpc.HealthStub, "Check", health_pb2.HealthCheckRequest(), timeout=5)
    except CloisterError as exc:
        return False, f"{address}: {exc.message}"
    finally:
        peer.close()
    serving = response.status == health_pb2.HealthCheckResponse.SERVING
    return serving, f"{address} ({'serving' if serving else 'not serving'}, attested)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
