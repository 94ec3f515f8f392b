"""What every service process does the same way: identity, peers, servers, shutdown.

A service's ``serve`` starts a :class:`ServiceRuntime`, asks it for peers and servers, and calls
:meth:`ServiceRuntime.run_until_stopped`; nothing about TLS, attestation or addresses is
repeated in the services. Start-up fails closed: a wrongly signed identity file, an unknown or
missing TEE backend, or an attestation service that will not endorse us stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence

import grpc
from cryptography import x509

from cloister.attestation.backends import SIMULATED_NOTICE
from cloister.attestation.deployment import Deployment
from cloister.attestation.identity import ServiceIdentity, open_backend
from cloister.attestation.producers import EndorsementSources
from cloister.attestation.report import AttestationPolicy
from cloister.attestation.verify import PeerVerifier
from cloister.config import Settings
from cloister.rpc import addresses
from cloister.rpc.audit_trail import AuditTrail
from cloister.rpc.channel import Peer
from cloister.rpc.identity import IdentityKeeper
from cloister.rpc.server import requires_client_certificate, start_server

logger = logging.getLogger(__name__)


def attestation_policy(settings: Settings) -> AttestationPolicy:
    return AttestationPolicy(
        accepted_statuses=frozenset(settings.attestation.accepted_quote_statuses),
        max_report_age=dt.timedelta(seconds=settings.attestation.max_report_age_seconds),
    )


def deployment_of(settings: Settings) -> Deployment:
    return Deployment(settings.attestation_dir, settings.attestation)


class ServiceRuntime:
    def __init__(self, settings: Settings, service: str, keeper: IdentityKeeper, verifier: PeerVerifier) -> None:
        self.settings = settings
        self.service = service
        self.keeper = keeper
        self.verifier = verifier
        self._servers: list[tuple[str, grpc.aio.Server]] = []
        self._peers: list[Peer] = []
        self._stopping = asyncio.Event()

    @classmethod
    async def start(cls, settings: Settings, service: str) -> ServiceRuntime:
        """Verify the identity file, open the TEE backend and get an attested identity.

        Raises:
            AttestationError: the identity file's auditor signatures do not hold.
            ConfigurationError: the backend or the deployment's material is missing.
        """
        deployment = deployment_of(settings)
        enclave_info, auditors = deployment.verified_enclave_info()
        backend = open_backend(
            settings.tee_backend, deployment, service, sources=EndorsementSources.from_settings(settings.attestation)
        )
        logger.info("enclave_info.toml signed by %s", ", ".join(auditors))
        if backend.simulated:
            logger.info(SIMULATED_NOTICE)
        keeper = IdentityKeeper(settings, deployment, backend, service)
        await keeper.start()
        verifier = PeerVerifier(deployment.as_root_ca(), enclave_info, attestation_policy(settings))
        return cls(settings, service, keeper, verifier)

    @property
    def identity(self) -> ServiceIdentity:
        return self.keeper.current()

    def peer(self, service: str, endpoint: str | None = None, *, replicas: Sequence[str] = ()) -> Peer:
        """A client of ``service`` at ``endpoint`` (default: the endpoint named like the service).

        With ``replicas`` (addresses), each new connection tries the next of them in turn, so a
        replica that stopped answering is left for the next one.
        """
        name = endpoint or service
        rotation = itertools.cycle(replicas)
        peer = Peer(
            service,
            (lambda: next(rotation)) if replicas else (lambda: addresses.resolve(self.settings, name)),
            self.verifier,
            self.keeper.current,
            self.settings.rpc,
        )
        self._peers.append(peer)
        return peer

    def audit_trail(self) -> AuditTrail:
        """This service's audit trail: a spool in its own state directory, shipped to management."""
        source = self.settings.process_name(self.service)
        return AuditTrail(self.peer("management"), self.settings.state_dir / "audit-spool" / source, source)

    async def serve(self, endpoint: str, register: Iterable[Callable[[grpc.aio.Server], None]]) -> int:
        """Start ``endpoint``'s server and publish its address; returns the bound port."""
        configured = self.settings.endpoint(endpoint)
        credentials = self.keeper.server_credentials(requires_client_certificate(endpoint))
        deployment_ca = x509.load_pem_x509_certificate(self.identity.deployment_ca_pem)
        server, port = await start_server(
            endpoint,
            configured.bind_address,
            credentials,
            self.verifier,
            self.settings.rpc,
            register,
            forwarder_issuer=deployment_ca,
        )
        self._servers.append((endpoint, server))
        addresses.publish(self.settings, endpoint, port)
        logger.info("%s listening on %s:%d", endpoint, configured.bind_host, port)
        return port

    def stop(self) -> None:
        self._stopping.set()

    async def run_until_stopped(self, before_shutdown: Callable[[], Awaitable[None]] | None = None) -> None:
        """Announce readiness, then serve until SIGINT or SIGTERM.

        ``before_shutdown`` runs after the signal, while servers and peers still work (to drain
        running tasks or flush buffers).
        """
        await wait_for_stop_signal(self.settings, self.service, self._stopping)
        try:
            if before_shutdown is not None:
                await before_shutdown()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        for endpoint, _ in self._servers:
            addresses.unpublish(self.settings, endpoint)
        await asyncio.gather(*(server.stop(grace=2.0) for _, server in self._servers))
        for peer in self._peers:
            await peer.close()
        await self.keeper.stop()


async def wait_for_stop_signal(settings: Settings, service: str, stopping: asyncio.Event) -> None:
    """Publish that ``service`` is ready, wait for SIGINT/SIGTERM, then withdraw readiness."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    addresses.mark_ready(settings, settings.process_name(service))
    logger.info("%s ready", service)
    try:
        await stopping.wait()
    finally:
        addresses.unmark_ready(settings, settings.process_name(service))
