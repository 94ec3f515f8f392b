"""Attested channels: verify the server's certificate first, then pin exactly that certificate.

grpcio has no certificate-verify callback, so a client first completes a plain TLS handshake to
read the server's certificate, verifies its evidence and identity, and only then opens the
gRPC channel with that certificate as its only trust anchor. If the server's certificate
changes (a restart, a renewal), the pinned handshake fails and the next call verifies again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from cloister.attestation.certificate import TLS_NAME
from cloister.attestation.identity import ServiceIdentity
from cloister.attestation.measurement import enclave_name
from cloister.attestation.verify import PeerIdentity, PeerVerifier
from cloister.config import RPCSettings
from cloister.errors import AttestationError, CloisterError, DeadlineExceededError, UnavailableError
from cloister.rpc import tracing
from cloister.rpc.errors import from_rpc_error
from cloister.rpc.server import ANSWERED_BY, channel_options, keepalive_interval_ms

logger = logging.getLogger(__name__)
Stub = TypeVar("Stub")
_CONNECT_TIMEOUT = 10.0
"""For a person's one-off connection (``cloister attest``); services use rpc.peer_timeout_seconds."""


def fetch_certificate(address: str, identity: ServiceIdentity | None, timeout: float = _CONNECT_TIMEOUT) -> bytes:
    """The DER certificate the server at ``address`` presents (not yet trusted)."""
    return _certificate_at(address, identity, timeout)[0]


def _certificate_at(address: str, identity: ServiceIdentity | None, timeout: float) -> tuple[bytes, str]:
    """The certificate presented at ``address``, and the ``IP:PORT`` that presented it.

    A name may resolve to several replicas; the first that accepts the connection answers, and
    its own address is returned so that the channel pinned to its certificate dials it again.
    """
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # trust comes from the attestation report, checked next
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if identity is not None:
        _load_identity(context, identity)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw:
            der = _handshake(raw, context).getpeercert(binary_form=True)
            peer_host, peer_port = raw.getpeername()[:2]
    except (OSError, ValueError) as exc:
        raise UnavailableError(f"cannot reach {address}: {exc}") from None
    if not der:
        raise UnavailableError(f"{address} presented no certificate")
    dialled = f"[{peer_host}]:{peer_port}" if ":" in peer_host else f"{peer_host}:{peer_port}"
    return der, dialled


def _handshake(raw: socket.socket, context: ssl.SSLContext) -> ssl.SSLObject:
    """A TLS handshake over ``raw`` through memory buffers.

    Not ``context.wrap_socket``: when the peer resets the connection just after it was accepted
    (a server killed at that moment), Python 3.11's ``SSLSocket`` raises from its constructor
    without closing itself, and the socket leaks.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=TLS_NAME)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            received = raw.recv(65536)
            if not received:
                raise ConnectionResetError("the peer closed the connection during the TLS handshake") from None
            incoming.write(received)
    raw.sendall(outgoing.read())  # our last handshake message (and certificate), if any
    return tls


def _load_identity(context: ssl.SSLContext, identity: ServiceIdentity) -> None:
    # ssl can only load keys from files: keep them in a private directory for an instant.
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o700)
        path = os.path.join(directory, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(identity.private_key_pem + identity.client_certificate_pem)
        context.load_cert_chain(path)


def verified_credentials(
    address: str,
    service: str,
    verifier: PeerVerifier,
    identity: ServiceIdentity | None,
    timeout: float = _CONNECT_TIMEOUT,
) -> tuple[grpc.ChannelCredentials, PeerIdentity]:
    """Verify the server at ``address`` is ``service`` and build credentials pinned to it."""
    credentials, peer, _ = verified_connection(address, service, verifier, identity, timeout)
    return credentials, peer


def verified_connection(
    address: str,
    service: str,
    verifier: PeerVerifier,
    identity: ServiceIdentity | None,
    timeout: float = _CONNECT_TIMEOUT,
) -> tuple[grpc.ChannelCredentials, PeerIdentity, str]:
    """:func:`verified_credentials`, and the ``IP:PORT`` of the server verified, for the channel to dial."""
    der, dialled = _certificate_at(address, identity, timeout)
    peer = verifier.verify(der, [enclave_name(service)])
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    if identity is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=pem)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pem,
            private_key=identity.private_key_pem,
            certificate_chain=identity.client_certificate_pem,
        )
    return credentials, peer, dialled


def _options(rpc: RPCSettings, internal: bool) -> list[tuple[str, Any]]:
    interval = keepalive_interval_ms(rpc)
    return [
        *channel_options(rpc, internal),
        ("grpc.ssl_target_name_override", TLS_NAME),
        ("grpc.enable_retries", 0),
        # A killed, stopped or unreachable peer fails the calls waiting on it within
        # rpc.peer_timeout_seconds, not at their deadline; an idle connection is not pinged.
        ("grpc.keepalive_time_ms", interval),
        ("grpc.keepalive_timeout_ms", interval),
        ("grpc.http2.ping_timeout_ms", interval),  # what newer gRPC cores wait for the ping's answer
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
    ]


_RETIRE_GRACE = 60.0
"""How long a channel opened with a renewed identity keeps serving the calls it has in flight."""


class Peer:
    """An async client of one service, re-verified whenever its connection must be rebuilt.

    ``resolve`` is asked for the address each time, so a peer that restarted on another port
    is found again; ``identity`` for this service's current identity, so a renewed certificate
    is used for new calls while calls in flight finish on the old channel.
    """

    def __init__(
        self,
        service: str,
        resolve: Callable[[], str],
        verifier: PeerVerifier,
        identity: Callable[[], ServiceIdentity | None],
        rpc: RPCSettings,
    ) -> None:
        self.service = service
        self._resolve = resolve
        self._verifier = verifier
        self._identity = identity
        self._rpc = rpc
        self._channel: grpc.aio.Channel | None = None
        self._channel_identity: ServiceIdentity | None = None
        self._stubs: dict[type, Any] = {}
        self._lock = asyncio.Lock()
        self._failures = 0

    async def _connect(self) -> grpc.aio.Channel:
        failures = self._failures
        async with self._lock:
            if self._failures != failures:
                # The peer could not be reached while this call waited its turn: it learns so now
                # rather than waiting out a connection attempt of its own.
                raise self._unavailable()
            identity = self._identity()
            if self._channel is not None and identity is not self._channel_identity:
                self._retire(self._channel)
                self._channel = None
            if self._channel is None:
                try:
                    credentials, _, address = await asyncio.to_thread(
                        verified_connection,
                        self._resolve(),
                        self.service,
                        self._verifier,
                        identity,
                        self._rpc.peer_timeout_seconds,
                    )
                except AttestationError as exc:
                    # Our caller cannot fix this; to them the service is unavailable, and why.
                    raise UnavailableError(f"{self.service} failed attestation: {exc.message}") from exc
                except UnavailableError as exc:
                    self._failures += 1
                    logger.warning("%s is unavailable: %s", self.service, exc.message)
                    raise self._unavailable() from None
                self._channel = grpc.aio.secure_channel(address, credentials, options=_options(self._rpc, True))
                self._channel_identity = identity
                self._stubs = {}
            return self._channel

    async def call(
        self,
        stub_type: type[Stub],
        method: str,
        request: Any,
        *,
        metadata: tuple[tuple[str, str | bytes], ...] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call ``method`` on ``stub_type``; failures arrive as ``CloisterError``.

        When the connection itself fails, the channel is replaced (the peer may have restarted,
        elsewhere or with a new certificate) and the call is tried once more; calls in flight on
        the old channel are left to finish. An error the peer answered with, UNAVAILABLE
        included (its own peer is down), is the call's answer and leaves the channel alone.
        """
        for attempt in (1, 2):
            channel = await self._connect()
            stub = self._stubs.get(stub_type)
            if stub is None:
                stub = self._stubs[stub_type] = stub_type(channel)  # type: ignore[call-arg]
            deadline = timeout or self._rpc.call_timeout_seconds
            try:
                with tracing.client_span(self.service, method, metadata) as sent:
                    return await getattr(stub, method)(request, metadata=sent, timeout=deadline)
            except grpc.aio.AioRpcError as exc:
                if _answered(exc):
                    raise from_rpc_error(exc) from exc
                if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    late = f"the {self._name} service did not answer within {deadline:g} s"
                    raise DeadlineExceededError(late) from None
                if exc.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise from_rpc_error(exc) from exc
                logger.warning("%s is unavailable: %s", self.service, exc.details())
                await self._replace(channel)
                if attempt == 2 or _unresponsive(exc):
                    raise self._unavailable() from None
        raise AssertionError("unreachable")

    async def stream(self, stub_type: type[Stub], method: str, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The responses of a long-lived stream ``method``, without a deadline; ends when the peer ends it.

        Failures arrive as ``CloisterError``; a connection that failed is replaced for the next call.
        """
        channel = await self._connect()
        stub = self._stubs.get(stub_type)
        if stub is None:
            stub = self._stubs[stub_type] = stub_type(channel)  # type: ignore[call-arg]
        call = getattr(stub, method)(requests)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            if _answered(exc) or exc.code() is not grpc.StatusCode.UNAVAILABLE:
                raise from_rpc_error(exc) from exc
            await self._replace(channel)
            raise self._unavailable() from None
        finally:
            call.cancel()

    def _unavailable(self) -> UnavailableError:
        """What callers are told: which service is down, never where it was expected (an internal address)."""
        return UnavailableError(f"the {self._name} service is unavailable; try again shortly")

    @property
    def _name(self) -> str:
        return self.service.replace("_", " ")

    async def _replace(self, channel: grpc.aio.Channel) -> None:
        async with self._lock:
            if self._channel is channel:
                self._channel = None
                self._retire(channel)

    @staticmethod
    def _retire(channel: grpc.aio.Channel) -> None:
        """Close ``channel`` once the calls still on it had time to finish: closing it now would cancel them."""
        asyncio.get_running_loop().call_later(_RETIRE_GRACE, lambda: asyncio.ensure_future(channel.close()))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def _unresponsive(exc: grpc.RpcError) -> bool:
    """The peer left a ping unanswered: it is stopped or cut off, and a second try would only wait as long again."""
    return "ping timeout" in (exc.details() or "")


def _answered(exc: grpc.RpcError) -> bool:
    """Whether a Cloister service answered with this error itself (rather than the connection failing)."""
    return any(key == ANSWERED_BY for key, _ in exc.trailing_metadata() or ())


class SyncPeer:
    """The blocking twin of :class:`Peer`, for the SDK and the CLI."""

    def __init__(
        self,
        service: str,
        address: str,
        verifier: PeerVerifier,
        identity: ServiceIdentity | None,
        rpc: RPCSettings,
    ) -> None:
        self.service = service
        self.address = address
        self._verifier = verifier
        self._identity = identity
        self._rpc = rpc
        self._channel: grpc.Channel | None = None
        self._stubs: dict[type, Any] = {}
        self._lock = threading.Lock()
        self.peer_identity: PeerIdentity | None = None

    def connect(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                credentials, self.peer_identity, dialled = verified_connection(
                    self.address, self.service, self._verifier, self._identity, self._rpc.peer_timeout_seconds
                )
                self._channel = grpc.secure_channel(dialled, credentials, options=_options(self._rpc, False))
                self._stubs = {}
            return self._channel

    def call(
        self,
        stub_type: type[Stub],
        method: str,
        request: Any,
        *,
        metadata: tuple[tuple[str, str | bytes], ...] | None = None,
        timeout: float | None = None,
    ) -> Any:
        for attempt in (1, 2):
            channel = self.connect()
            stub = self._stubs.get(stub_type)
            if stub is None:
                stub = self._stubs[stub_type] = stub_type(channel)  # type: ignore[call-arg]
            deadline = timeout or self._rpc.call_timeout_seconds
            try:
                with tracing.client_span(self.service, method, metadata) as sent:
                    return getattr(stub, method)(request, metadata=sent, timeout=deadline)
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.UNAVAILABLE and attempt == 1 and not _answered(exc):
                    self.close()
                    if not _unresponsive(exc):
                        continue
                raise from_rpc_error(exc) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None


__all__ = ["CloisterError", "Peer", "SyncPeer", "fetch_certificate", "verified_connection", "verified_credentials"]
