"""What every service process does the same way: identity, peers, servers, shutdown.

A service's ``__main__`` builds a :class:`ServiceRuntime`, asks it for peers and servers, and
calls :meth:`ServiceRuntime.run_until_stopped`; nothing about TLS, attestation or addresses
is repeated in the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc

from cloister.attestation.deployment import Deployment
from cloister.attestation.enclave_info import verify_auditor_signatures
from cloister.attestation.identity import ServiceIdentity, create_identity
from cloister.attestation.sim import SIMULATED_NOTICE
from cloister.attestation.verify import PeerVerifier
from cloister.config import Settings
from cloister.rpc import addresses
from cloister.rpc.channel import Peer
from cloister.rpc.server import start_server

logger = logging.getLogger(__name__)


class ServiceRuntime:
    def __init__(self, settings: Settings, service: str) -> None:
        self.settings = settings
        self.service = service
        self.deployment = Deployment(settings.attestation_dir)
        enclave_info = self.deployment.enclave_info()
        verify_auditor_signatures(
            enclave_info.raw,
            self.deployment.auditor_signatures(),
            self.deployment.auditor_public_keys(),
            required=1,
        )
        self.verifier = PeerVerifier(self.deployment.as_root_ca(), enclave_info)
        self.identity: ServiceIdentity = create_identity(self.deployment, service, settings.tee_backend)
        if self.identity.tee_backend == "sim":
            logger.info(SIMULATED_NOTICE)
        self._servers: list[tuple[str, grpc.aio.Server]] = []
        self._peers: list[Peer] = []
        self._stopping = asyncio.Event()

    def peer(self, service: str, endpoint: str | None = None) -> Peer:
        """A client of ``service`` at ``endpoint`` (default: the endpoint named like the service)."""
        name = endpoint or service
        peer = Peer(
            service, lambda: addresses.resolve(self.settings, name), self.verifier, self.identity, self.settings.rpc
        )
        self._peers.append(peer)
        return peer

    async def serve(self, endpoint: str, register: Iterable[Callable[[grpc.aio.Server], None]]) -> int:
        """Start ``endpoint``'s server and publish its address; returns the bound port."""
        configured = self.settings.endpoint(endpoint)
        server, port = await start_server(
            endpoint, configured.address, self.identity, self.verifier, self.settings.rpc, register
        )
        self._servers.append((endpoint, server))
        addresses.publish(self.settings, endpoint, port)
        logger.info("%s listening on %s:%d", endpoint, configured.host, port)
        return port

    def stop(self) -> None:
        self._stopping.set()

    async def run_until_stopped(self, before_shutdown: Callable[[], Awaitable[None]] | None = None) -> None:
        """Announce readiness, then serve until SIGINT or SIGTERM.

        ``before_shutdown`` runs after the signal, while servers and peers still work (to drain
        running tasks or flush buffers).
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
        addresses.mark_ready(self.settings, self.service)
        logger.info("%s ready", self.service)
        try:
            await self._stopping.wait()
            if before_shutdown is not None:
                await before_shutdown()
        finally:
            addresses.unmark_ready(self.settings, self.service)
            await self.shutdown()

    async def shutdown(self) -> None:
        for endpoint, _ in self._servers:
            addresses.unpublish(self.settings, endpoint)
        await asyncio.gather(*(server.stop(grace=2.0) for _, server in self._servers))
        for peer in self._peers:
            await peer.close()
