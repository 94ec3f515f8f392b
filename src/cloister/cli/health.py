"""``cloister status``: ask every endpoint's gRPC health service, check the execution process.

Status holds no identity of its own: it obtains one from the attestation service like a
service does (health checks are open to any attested caller), so it also proves that the
attestation service endorses evidence.
"""

from __future__ import annotations

import asyncio
import os

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloister.attestation.certificate import TLS_NAME
from cloister.attestation.identity import ServiceIdentity, open_backend
from cloister.attestation.verify import PeerVerifier
from cloister.config import ATTESTATION_SERVICE, ENDPOINTS, Settings
from cloister.errors import CloisterError
from cloister.rpc import addresses
from cloister.rpc.channel import SyncPeer
from cloister.rpc.identity import obtain_identity
from cloister.rpc.runtime import attestation_policy, deployment_of

_SERVICE_OF = {"authentication_api": "authentication", "authentication_internal": "authentication"}


def check_all(settings: Settings) -> dict[str, tuple[bool, str]]:
    results: dict[str, tuple[bool, str]] = {}
    deployment = deployment_of(settings)
    results[ATTESTATION_SERVICE] = _check_attestation(settings, deployment.as_root_ca_pem())
    try:
        verifier = PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), attestation_policy(settings))
        backend = open_backend(settings.tee_backend, deployment, "status")
        identity = asyncio.run(obtain_identity(settings, deployment, backend, "status"))
    except CloisterError as exc:
        results.update(
            {name: (False, exc.message) for name in (*(e for e in ENDPOINTS if e != ATTESTATION_SERVICE), "execution")}
        )
        return results
    for endpoint in ENDPOINTS:
        if endpoint != ATTESTATION_SERVICE:
            results[endpoint] = _check_endpoint(settings, endpoint, verifier, identity)
    pid = addresses.ready_pid(settings, "execution")
    running = pid is not None and _alive(pid)
    sandbox = addresses.note(settings, "execution", "sandbox") if running else None
    detail = f"pid {pid}" if pid else "not running"
    usable = running and not (sandbox or "").startswith("UNAVAILABLE")
    results["execution"] = (usable, f"{detail}; task sandbox {sandbox}" if sandbox else detail)
    return results


def _check_attestation(settings: Settings, root_pem: bytes) -> tuple[bool, str]:
    try:
        address = addresses.resolve(settings, ATTESTATION_SERVICE)
    except CloisterError as exc:
        return False, exc.message
    credentials = grpc.ssl_channel_credentials(root_certificates=root_pem)
    with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", TLS_NAME)]) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            return False, f"{address}: {exc.details()}"
    serving = response.status == health_pb2.HealthCheckResponse.SERVING
    return serving, f"{address} ({'serving' if serving else 'not serving'}, under the attestation root CA)"


def _check_endpoint(
    settings: Settings, endpoint: str, verifier: PeerVerifier, identity: ServiceIdentity
) -> tuple[bool, str]:
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
