"""The console's connection to the platform: attested channels shared by every signed-in user,
and calls made as one of them (their token on each, and their browser's address, which the
console's attested identity vouches for: ``cloister.rpc.forwarding``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister.attestation.identity import ServiceIdentity
from cloister.rpc.forwarding import ClaimSigner
from cloister.sdk._channel import AUTHENTICATION_API, TEACLAVE_FRONTEND, AttestedChannel, Channel
from cloister.sdk._connection import open_verified
from cloister.sdk._trust import Trust


class PlatformLink:
    """Attested channels to the authentication API and the frontend, opened on first use.

    A channel that cannot be opened (the platform is still starting, say) is tried again on the
    next request rather than failing the console's start.
    """

    def __init__(
        self, trust: Trust, authentication: str, frontend: str, identity: Callable[[], ServiceIdentity]
    ) -> None:
        self._trust = trust
        self._addresses = {AUTHENTICATION_API: authentication, TEACLAVE_FRONTEND: frontend}
        self._claims = ClaimSigner(identity)
        self._channels: dict[str, Channel] = {}
        self._lock = threading.Lock()

    @property
    def trust(self) -> Trust:
        """The deployment's root CA and identity file, which channels and receipts are checked against."""
        return self._trust

    def channel(self, endpoint: str) -> Channel:
        """The channel to ``endpoint`` (``AUTHENTICATION_API`` or ``TEACLAVE_FRONTEND``).

        Raises:
            UnavailableError: it cannot be reached or failed attestation.
        """
        with self._lock:
            channel = self._channels.get(endpoint)
        if channel is not None:
            return channel
        # Opened without the lock: while a service is slow to answer or down, each request
        # waits for its own attempt, not for every attempt queued before it.
        service = "authentication" if endpoint == AUTHENTICATION_API else "frontend"
        opened = AttestedChannel(open_verified(service, self._addresses[endpoint], self._trust.verifier()))
        with self._lock:
            channel = self._channels.setdefault(endpoint, opened)
        if channel is not opened:  # another request opened one meanwhile
            opened.close()
        return channel

    def login(self, user_id: str, password: str, address: str) -> str:
        """A token for ``user_id``, asked for by the browser at ``address``.

        Raises:
            AuthenticationError: the credentials were refused, or logins are paused for them.
            UnavailableError: the authentication service cannot be reached.
        """
        request = apb.UserLoginRequest(id=user_id, password=password)
        metadata = self.claim(address, "UserLogin")
        response = self.channel(AUTHENTICATION_API).call(AUTHENTICATION_API, "UserLogin", request, metadata=metadata)
        return str(response.token)

    def claim(self, address: str, method: str) -> tuple[tuple[str, str | bytes], ...]:
        """Metadata naming ``address`` as the client of this call to ``method``, signed as the console."""
        return self._claims.metadata(address, method)

    def as_user(self, user_id: str, token: str, address: str) -> Participant:
        """Calls as ``user_id``, from the browser at ``address``."""
        return Participant(self, user_id, token, address)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


@dataclass(frozen=True)
class Participant:
    """Calls to the frontend as one signed-in user: what the SDK's handles send their calls through.

    There is no password here to log in again with: a refused token is the end of the session
    (``AuthenticationError``), and the browser is sent back to sign in.
    """

    link: PlatformLink
    user_id: str
    token: str = field(repr=False)
    address: str = ""
    """The browser's address, as the console's listener saw it."""

    def frontend(
        self, method: str, request: Message, *, service: str = TEACLAVE_FRONTEND, timeout: float | None = None
    ) -> Any:
        metadata = (("id", self.user_id), ("token", self.token), *self.link.claim(self.address, method))
        channel = self.link.channel(TEACLAVE_FRONTEND)
        return channel.call(service, method, request, timeout=timeout, metadata=metadata)
