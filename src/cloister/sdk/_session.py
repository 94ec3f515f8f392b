"""A logged-in user's calls: one login, its token on every call, renewed once when refused.

Tokens expire (``[authentication] token_lifetime_seconds``) and stop at once when their user
changes. A call refused as unauthenticated did nothing, so the session logs in again with its
credentials and sends the call once more; a second refusal is the answer. The token is never
logged or shown.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from google.protobuf.message import Message

from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister.errors import AuthenticationError
from cloister.sdk._channel import AUTHENTICATION_API, TEACLAVE_FRONTEND, Channel
from cloister.sdk._trust import Credentials


class Caller(Protocol):
    """What handles send frontend calls through: a :class:`Session`, or a Teaclave-style class,
    whose ``metadata`` its user sets."""

    def frontend(
        self, method: str, request: Message, *, service: str = TEACLAVE_FRONTEND, timeout: float | None = None
    ) -> Any: ...


class UserCaller(Caller, Protocol):
    """A :class:`Caller` that knows whose calls it sends: a :class:`Session`, or the web console's
    calls for one signed-in user."""

    @property
    def user_id(self) -> str: ...


class Session:
    """Calls to the frontend and the authentication API as one user."""

    def __init__(self, frontend: Channel, authentication: Channel, credentials: Credentials) -> None:
        self._frontend = frontend
        self._authentication = authentication
        self._credentials = credentials
        self._token: str | None = None
        self._lock = threading.Lock()

    @property
    def user_id(self) -> str:
        return self._credentials.user_id

    def login(self) -> None:
        """Log in with the session's credentials.

        Raises:
            AuthenticationError: the user id or password is wrong, or logins are paused for it.
        """
        request = apb.UserLoginRequest(id=self._credentials.user_id, password=self._credentials.password)
        response = self._authentication.call(AUTHENTICATION_API, "UserLogin", request)
        with self._lock:
            self._token = response.token

    def frontend(
        self, method: str, request: Message, *, service: str = TEACLAVE_FRONTEND, timeout: float | None = None
    ) -> Any:
        return self._call(self._frontend, service, method, request, timeout)

    def authentication(self, method: str, request: Message) -> Any:
        return self._call(self._authentication, AUTHENTICATION_API, method, request, None)

    def _call(self, channel: Channel, service: str, method: str, request: Message, timeout: float | None) -> Any:
        token = self._current_token()
        try:
            return channel.call(service, method, request, timeout=timeout, metadata=self._metadata(token))
        except AuthenticationError:
            if not self._renew(token):
                raise
        return channel.call(service, method, request, timeout=timeout, metadata=self._metadata(self._current_token()))

    def _current_token(self) -> str:
        with self._lock:
            token = self._token
        if token is None:
            self.login()
            return self._current_token()
        return token

    def _renew(self, refused: str) -> bool:
        """Log in again unless another thread already did since ``refused`` was sent; False if
        the login is refused too (the original refusal is then the answer)."""
        with self._lock:
            if self._token != refused:
                return True
        try:
            self.login()
        except AuthenticationError:
            return False
        return True

    def _metadata(self, token: str) -> tuple[tuple[str, str], ...]:
        return (("id", self._credentials.user_id), ("token", token))

    def close(self) -> None:
        self._frontend.close()
        self._authentication.close()
