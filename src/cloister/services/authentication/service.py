"""The authentication process: open the user database, make sure an admin exists, serve both endpoints.

Unlike Teaclave, there is no built-in ``admin``/``teaclave`` account: the first admin's
password is the configured one or, when none is configured, a random one written once to
``<state_dir>/admin-password`` (mode 0600). Its location is logged, the password never.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_authentication_service_pb2_grpc as agrpc
from cloister.config import Settings
from cloister.crypto.secret_files import create_secret_file
from cloister.errors import AuthenticationError, ConfigurationError
from cloister.model.roles import Role, RoleKind
from cloister.rpc.authorizer import RemoteAuthorizer
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.authentication.audit import audited
from cloister.services.authentication.feed import CredentialFeed
from cloister.services.authentication.passwords import PasswordHasher, password_too_long
from cloister.services.authentication.servicer import ApiServicer, CredentialFeedServicer, InternalServicer
from cloister.services.authentication.tokens import JWTIssuer
from cloister.services.authentication.users import UserRecord, UserStore, check_user_id, new_generation

logger = logging.getLogger(__name__)


def state_directory(settings: Settings) -> Path:
    """Where the service keeps its user database, sealing key and JWT key."""
    return settings.state_dir / "authentication"


async def ensure_first_admin(store: UserStore, settings: Settings) -> Path | None:
    """Create the PlatformAdmin ``settings.admin.user`` unless it or any other admin exists.

    An existing admin is left untouched, and a deleted one is not revived at the next start
    (with the password it was created with) while other admins exist.

    Returns:
        The password file's path when the admin was created with a generated password
        (written now or by an earlier start that did not finish creating the user), else None.
    """
    user_id = settings.admin.user
    try:
        check_user_id(user_id)
    except AuthenticationError:
        raise ConfigurationError(f"admin.user {user_id!r} is not a valid user id") from None
    if store.exists(user_id) or any(record.role.is_admin for record in store.list_records()):
        return None  # created before, or its place taken by other admins: never brought back
    password_file: Path | None = None
    if settings.admin.password is not None:
        password = settings.admin.password.get_secret_value()
        if not password or password_too_long(password):
            raise ConfigurationError("admin.password must be 1 to 4096 bytes")
    else:
        password_file = settings.admin_password_path
        password = _generated_password(password_file)
    hashed = await asyncio.to_thread(PasswordHasher(settings.authentication).hash, password)
    admin = UserRecord(user_id, Role(RoleKind.PLATFORM_ADMIN), hashed, new_generation())
    if not await store.create(admin, former=store.former_role(user_id)):
        return None  # created concurrently; leave that one alone
    if password_file is not None:
        logger.warning(
            "created the platform admin %r; its password is in %s (readable by this user only)",
            user_id,
            password_file,
        )
    else:
        logger.info("created the platform admin %r with the configured password", user_id)
    return password_file


def _generated_password(path: Path) -> str:
    create_secret_file(path, (secrets.token_urlsafe(18) + "\n").encode())
    password = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not password or password_too_long(password):
        raise ConfigurationError(f"{path} must hold the admin password (1 to 4096 bytes); delete it to generate one")
    return password


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "authentication")
    directory = state_directory(settings)
    feed = CredentialFeed()
    store = UserStore(directory, on_change=feed.changed)
    try:
        await store.upgrade_keys()
        issuer = JWTIssuer.load_or_create(directory, settings.authentication.token_lifetime_seconds)
        await ensure_first_admin(store, settings)
        trail = runtime.audit_trail()
        trail.start()
        authorizer = RemoteAuthorizer(runtime.peer("access_control"))
        api = audited(ApiServicer(store, issuer, authorizer, settings.authentication), trail)
        internal = InternalServicer(store, issuer)
        await runtime.serve(
            "authentication_api",
            [lambda s: agrpc.add_TeaclaveAuthenticationApiServicer_to_server(api, s)],
        )
        await runtime.serve(
            "authentication_internal",
            [
                lambda s: agrpc.add_TeaclaveAuthenticationInternalServicer_to_server(internal, s),
                lambda s: cgrpc.add_CredentialFeedServicer_to_server(CredentialFeedServicer(feed), s),
            ],
        )

        async def before_shutdown() -> None:
            feed.close()
            await trail.stop()

        await runtime.run_until_stopped(before_shutdown=before_shutdown)
    finally:
        store.close()
