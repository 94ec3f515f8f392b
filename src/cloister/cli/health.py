"""``cloister status`` and ``cloister probe``: ask endpoints' gRPC health service, check the
execution process.

Neither holds an identity of its own: each obtains one from the attestation service like a
service does (health checks are open to any attested caller), so it also proves that the
attestation service endorses evidence.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloister.attestation.certificate import TLS_NAME
from cloister.attestation.identity import ServiceIdentity, open_backend
from cloister.attestation.producers import EndorsementSources
from cloister.attestation.verify import PeerVerifier
from cloister.config import ATTESTATION_SERVICE, CONSOLE, ENDPOINTS, SERVICES, Settings
from cloister.errors import CloisterError
from cloister.rpc import addresses
from cloister.rpc.channel import SyncPeer
from cloister.rpc.identity import obtain_identity
from cloister.rpc.runtime import attestation_policy, deployment_of

_SERVICE_OF = {"authentication_api": "authentication", "authentication_internal": "authentication"}
PROBED = (ATTESTATION_SERVICE, *SERVICES)
"""What ``cloister probe`` can check: the attestation service and the seven."""


def check_service(settings: Settings, service: str) -> dict[str, tuple[bool, str]]:
    """The health of this host's ``service`` (``service`` in :data:`PROBED`), by endpoint: each
    of its endpoints, dialled where this host's server listens, answered SERVING over attested
    TLS (the attestation service: under its root CA), or, for the execution service, which
    listens nowhere, its process is alive and ready."""
    if service == "execution":
        pid = addresses.ready_pid(settings, settings.process_name("execution"))
        if pid is None or not _alive(pid):
            return {"execution": (False, "not ready (no live process marked ready in the state directory)")}
        return {"execution": (True, f"pid {pid} ready")}
    deployment = deployment_of(settings)
    if service == ATTESTATION_SERVICE:
        return {service: _check_attestation(settings, deployment.as_root_ca_pem(), local=True)}
    endpoints = [endpoint for endpoint in ENDPOINTS if _SERVICE_OF.get(endpoint, endpoint) == service]
    try:
        verifier = PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), attestation_policy(settings))
        backend = open_backend(
            settings.tee_backend, deployment, "status", sources=EndorsementSources.from_settings(settings.attestation)
        )
        identity = asyncio.run(obtain_identity(settings, deployment, backend, "status"))
    except CloisterError as exc:
        return {endpoint: (False, exc.message) for endpoint in endpoints}
    return {endpoint: _check_endpoint(settings, endpoint, verifier, identity, local=True) for endpoint in endpoints}


def check_all(settings: Settings) -> dict[str, tuple[bool, str]]:
    results: dict[str, tuple[bool, str]] = {}
    deployment = deployment_of(settings)
    results[ATTESTATION_SERVICE] = _check_attestation(settings, deployment.as_root_ca_pem())
    try:
        verifier = PeerVerifier(deployment.as_root_ca(), deployment.enclave_info(), attestation_policy(settings))
        backend = open_backend(
            settings.tee_backend, deployment, "status", sources=EndorsementSources.from_settings(settings.attestation)
        )
        identity = asyncio.run(obtain_identity(settings, deployment, backend, "status"))
    except CloisterError as exc:
        results.update(
            {name: (False, exc.message) for name in (*(e for e in ENDPOINTS if e != ATTESTATION_SERVICE), "execution")}
        )
        return results
    for endpoint in ENDPOINTS:
        if endpoint != ATTESTATION_SERVICE:
            results[endpoint] = _check_endpoint(settings, endpoint, verifier, identity)
    for endpoint, (ok, detail) in list(results.items()):
        results[endpoint] = (ok, detail + _supervision(settings, _SERVICE_OF.get(endpoint, endpoint)))
    pid = addresses.ready_pid(settings, "execution")
    running = pid is not None and _alive(pid)
    sandbox = addresses.note(settings, "execution", "sandbox") if running else None
    detail = f"pid {pid}" if pid else "not running"
    usable = running and not (sandbox or "").startswith("UNAVAILABLE")
    detail = f"{detail}; task sandbox {sandbox}" if sandbox else detail
    results["execution"] = (usable, detail + (_supervision(settings, "execution") if running else ""))
    if console_launched(settings):
        results[CONSOLE] = _check_console(settings)
    return results


def console_launched(settings: Settings) -> bool:
    """Whether ``cloister up`` started a web console for this state directory (services started
    one by one, ``cloister service NAME``, have none)."""
    from cloister.launcher import LaunchRecord

    try:
        record = LaunchRecord.read(settings.state_dir)
    except CloisterError:
        return False
    return settings.console.enabled and record is not None and record.console is not None


def _check_console(settings: Settings) -> tuple[bool, str]:
    """Whether the web console answers its sign-in page (over HTTPS, checked against its certificate)."""
    from cloister.console.certificate import certificate_paths

    url = addresses.published(settings, CONSOLE)
    pid = addresses.ready_pid(settings, CONSOLE)
    if url is None or pid is None or not _alive(pid):
        return False, "not running"
    # Its own self-signed certificate is what it is checked against; a configured one, the system's CAs.
    trusted = certificate_paths(settings)[0] if settings.console.certificate is None else None
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(trusted)) if trusted else True
    try:
        answer = httpx.get(f"{url}/sign-in", verify=verify, timeout=settings.rpc.peer_timeout_seconds)
    except httpx.HTTPError as exc:
        return False, f"{url} does not answer: {exc}"
    if answer.status_code != 200:
        return False, f"{url} answered {answer.status_code}"
    return True, f"{url} (serving)" + _supervision(settings, CONSOLE)


def _supervision(settings: Settings, service: str) -> str:
    """``; up 3 min, 1 restart`` from the note the launcher leaves at each start, or nothing without one."""
    try:
        restarts, started = (addresses.note(settings, service, "supervision") or "").split()
        count, uptime = int(restarts), max(time.time() - float(started), 0.0)
    except ValueError:
        return ""
    return f"; up {_duration(uptime)}, {count} restart{'' if count == 1 else 's'}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _local_address(settings: Settings, endpoint: str) -> str:
    """Where this host's own server of ``endpoint`` listens, as a probe dials it: not the address
    peers dial, which may lead to another replica behind one name (a Kubernetes Service).

    Raises:
        UnavailableError: it uses a dynamic port and is not running.
    """
    configured = settings.endpoint(endpoint)
    host, port = configured.bind_host, configured.bind_port
    if not port:
        return addresses.resolve(settings, endpoint)  # the port it published
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard listener is reached on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_attestation(settings: Settings, root_pem: bytes, *, local: bool = False) -> tuple[bool, str]:
    try:
        address = (
            _local_address(settings, ATTESTATION_SERVICE) if local else addresses.resolve(settings, ATTESTATION_SERVICE)
        )
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
    settings: Settings, endpoint: str, verifier: PeerVerifier, identity: ServiceIdentity, *, local: bool = False
) -> tuple[bool, str]:
    try:
        address = _local_address(settings, endpoint) if local else addresses.resolve(settings, endpoint)
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
