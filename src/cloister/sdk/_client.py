"""The Pythonic client: one login over two attested endpoints, with namespaces of handles.

``Client.connect`` opens the authentication API and the frontend, verifies both services'
attestation, logs in and returns a context manager; ``client.functions``, ``client.files``,
``client.tasks`` and ``client.users`` create remote objects and return handles to them;
``client.audit`` searches the audit log.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloister._proto import teaclave_authentication_service_pb2 as apb
from cloister.config import DEFAULT_PORTS, Settings, load_settings
from cloister.errors import ConfigurationError, InvalidArgumentError
from cloister.rpc import addresses
from cloister.sdk._audit import AuditAPI
from cloister.sdk._channel import AttestedChannel, Channel
from cloister.sdk._connection import open_verified
from cloister.sdk._files import FilesAPI
from cloister.sdk._functions import FunctionsAPI
from cloister.sdk._session import Session
from cloister.sdk._tasks import TasksAPI
from cloister.sdk._trust import Credentials, Trust

_AUTHENTICATION_PORT = DEFAULT_PORTS["authentication_api"]
_FRONTEND_PORT = DEFAULT_PORTS["frontend"]


class UsersAPI:
    """``client.users``: manage users (administrators and user managers)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def register(self, user_id: str, password: str, role: str, attribute: str = "") -> None:
        """Create a user; ``role`` is Teaclave's (``PlatformAdmin``, ``FunctionOwner``, ``DataOwner``, …)
        and ``attribute`` its organisation where the role has one."""
        request = apb.UserRegisterRequest(id=user_id, password=password, role=role, attribute=attribute)
        self._session.authentication("UserRegister", request)

    def update(self, user_id: str, password: str, role: str, attribute: str = "") -> None:
        request = apb.UserUpdateRequest(id=user_id, password=password, role=role, attribute=attribute)
        self._session.authentication("UserUpdate", request)

    def delete(self, user_id: str) -> None:
        self._session.authentication("DeleteUser", apb.DeleteUserRequest(id=user_id))

    def list(self, user_id: str | None = None) -> list[str]:
        """The users ``user_id`` (default: you) manages."""
        response = self._session.authentication("ListUsers", apb.ListUsersRequest(id=user_id or self._session.user_id))
        return list(response.ids)

    def reset_password(self, user_id: str) -> str:
        """A new random password for ``user_id``, returned once."""
        return str(self._session.authentication("ResetUserPassword", apb.ResetUserPasswordRequest(id=user_id)).password)

    def change_my_password(self, password: str) -> None:
        self._session.authentication("UserChangePassword", apb.UserChangePasswordRequest(password=password))


class Client:
    """A user's connection to a Cloister (or Teaclave) platform. Use it as a context manager.

    Make one with :meth:`connect` or :meth:`connect_local`; a channel of your own (a fake in
    tests) goes to the constructor.
    """

    def __init__(self, frontend: Channel, authentication: Channel, credentials: Credentials) -> None:
        self._session = Session(frontend, authentication, credentials)
        self.users = UsersAPI(self._session)
        self.functions = FunctionsAPI(self._session)
        self.files = FilesAPI(self._session)
        self.tasks = TasksAPI(self._session)
        self.audit = AuditAPI(self._session)

    @classmethod
    def connect(
        cls, frontend: str, *, trust: Trust, credentials: Credentials, authentication: str | None = None
    ) -> Client:
        """Connect to the frontend at ``frontend`` and log in.

        Args:
            frontend: ``host:port``, or a bare host for the default port 7777.
            trust: what both services' attestation is checked against before anything is sent.
            credentials: who to log in as; the client logs in again by itself when the token expires.
            authentication: the authentication API's address; default: the frontend's host, port 7776.

        Raises:
            AttestationError: a service failed attestation.
            UnavailableError: a service cannot be reached.
            AuthenticationError: the credentials were refused.
        """
        host, port = _split(frontend, _FRONTEND_PORT)
        frontend = f"{host}:{port}"
        if authentication is None:
            authentication = f"{host}:{_AUTHENTICATION_PORT}"
        verifier = trust.verifier()
        auth_channel = AttestedChannel(open_verified("authentication", authentication, verifier))
        try:
            frontend_channel = AttestedChannel(open_verified("frontend", frontend, verifier))
        except BaseException:
            auth_channel.close()
            raise
        client = cls(frontend_channel, auth_channel, credentials)
        try:
            client.login()
        except BaseException:
            client.close()
            raise
        return client

    @classmethod
    def connect_local(cls, state_dir: str | Path | None = None, *, credentials: Credentials | None = None) -> Client:
        """Connect to the platform ``make run`` (``cloister up``) started, as its administrator.

        ``state_dir`` defaults to the one ``cloister up`` uses ($CLOISTER_STATE_DIR, else
        ``~/.local/state/cloister``); the addresses are those the services published there, and
        the password is ``$CLOISTER_ADMIN_PASSWORD`` or the one written to ``<state>/admin-password``.

        Args:
            state_dir: the platform's state directory.
            credentials: log in as this user instead of the administrator, so that a local
                multi-party run needs no addresses or trust files of its own.

        Raises:
            ConfigurationError: no credentials were given and no administrator password is to be found.
        """
        settings = load_settings(None, os.environ, state_dir=None if state_dir is None else Path(state_dir))
        return cls.connect(
            _local_address(settings, "frontend"),
            trust=Trust.from_state_dir(settings.state_dir),
            credentials=credentials or _local_admin(settings),
            authentication=_local_address(settings, "authentication_api"),
        )

    @property
    def user_id(self) -> str:
        return self._session.user_id

    def login(self) -> None:
        """Log in now (the client also logs in by itself when its token is refused).

        Raises:
            AuthenticationError: the credentials were refused.
        """
        self._session.login()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(user_id={self.user_id!r})"


def _local_admin(settings: Settings) -> Credentials:
    """The local platform's administrator: ``$CLOISTER_ADMIN_PASSWORD`` or ``<state>/admin-password``."""
    if settings.admin.password is not None:
        return Credentials(settings.admin.user, settings.admin.password.get_secret_value())
    try:
        password = settings.admin_password_path.read_text().strip()
    except FileNotFoundError:
        raise ConfigurationError(
            f"no administrator password in {settings.admin_password_path}; set CLOISTER_ADMIN_PASSWORD"
        ) from None
    return Credentials(settings.admin.user, password)


def _local_address(settings: Settings, endpoint: str) -> str:
    """Where the local platform's ``endpoint`` listens: as published in its run directory, else configured."""
    return addresses.published(settings, endpoint) or addresses.resolve(settings, endpoint)


def _split(address: str, default_port: int) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, ``[v6]:port`` or a bare host (``default_port``)."""
    host, sep, port = address.rpartition(":")
    if not sep or host.endswith(":") or (address.startswith("[") and not host.endswith("]")):
        return address, default_port  # a bare name or IPv4 address, or a bracketed IPv6 one
    if not port.isdigit():
        raise InvalidArgumentError(f"address {address!r} must look like HOST:PORT")
    return host, int(port)
