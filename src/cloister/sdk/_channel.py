"""The one seam under the client: a ``Channel`` carries a request to one endpoint and back.

The default is :class:`AttestedChannel`, over an attested :class:`~cloister.rpc.channel.SyncPeer`;
SDK unit tests plug a fake in (like httpx's transports). Whatever the channel, failures arrive
as ``CloisterError``: the attested channel maps each gRPC status once, in
``cloister.errors.error_for_status``, chained from the ``grpc.RpcError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from google.protobuf.message import Message

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_authentication_service_pb2_grpc as agrpc
from cloister._proto import teaclave_frontend_service_pb2_grpc as fgrpc
from cloister.errors import InvalidArgumentError
from cloister.rpc.channel import SyncPeer

AUTHENTICATION_API = "TeaclaveAuthenticationApi"
TEACLAVE_FRONTEND = "TeaclaveFrontend"
CLOISTER_FRONTEND = "Frontend"
"""The gRPC services a client calls, by their names in the .proto files."""

_STUBS: dict[str, type] = {
    AUTHENTICATION_API: agrpc.TeaclaveAuthenticationApiStub,
    TEACLAVE_FRONTEND: fgrpc.TeaclaveFrontendStub,
    CLOISTER_FRONTEND: cgrpc.FrontendStub,
}

Metadata = Sequence[tuple[str, str | bytes]]


class Channel(Protocol):
    """Carries calls to one endpoint (the authentication API or the frontend)."""

    def call(
        self,
        service: str,
        method: str,
        request: Message,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Any:
        """Send ``request`` to ``service``'s ``method`` and return its answer.

        Raises:
            CloisterError: the most specific subclass for the status the call failed with.
        """
        ...

    def close(self) -> None: ...


class AttestedChannel:
    """A :class:`Channel` over an attested connection, verified before the first request."""

    def __init__(self, peer: SyncPeer) -> None:
        self._peer = peer

    @property
    def peer(self) -> SyncPeer:
        return self._peer

    def call(
        self,
        service: str,
        method: str,
        request: Message,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Any:
        stub = _STUBS.get(service)
        if stub is None:
            raise InvalidArgumentError(f"unknown service {service!r}; known: {', '.join(sorted(_STUBS))}")
        return self._peer.call(
            stub, method, request, timeout=timeout, metadata=None if metadata is None else tuple(metadata)
        )

    def close(self) -> None:
        self._peer.close()
