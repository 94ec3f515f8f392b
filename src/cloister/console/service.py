"""The console process: HTTPS (or, on loopback in development, HTTP) with uvicorn, until stopped.

Like a service, it first gets an attested identity, renewed in the background: the platform
takes the browser addresses it names only from that identity.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from cloister.attestation.identity import open_backend
from cloister.attestation.producers import EndorsementSources
from cloister.config import CONSOLE, Settings
from cloister.console.app import make_app
from cloister.console.certificate import ensure_certificate
from cloister.console.guard import Guard
from cloister.console.link import PlatformLink
from cloister.errors import ConfigurationError
from cloister.rpc import addresses
from cloister.rpc.identity import IdentityKeeper
from cloister.rpc.runtime import deployment_of
from cloister.sdk._trust import Trust

logger = logging.getLogger(__name__)


MAX_CONNECTIONS = 1000
"""Connections and requests at once; beyond them uvicorn answers 503 rather than running out of file descriptors."""


def console_url(settings: Settings, port: int) -> str:
    scheme = "http" if settings.console.plain_http else "https"
    host = settings.console.address.host
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard listener is reached on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    return f"{scheme}://{host}:{port}"


async def serve(settings: Settings) -> None:
    secure = not settings.console.plain_http
    certificate = key = None
    if secure:
        certificate, key = ensure_certificate(settings)
    deployment = deployment_of(settings)
    sources = EndorsementSources.from_settings(settings.attestation)
    keeper = IdentityKeeper(
        settings, deployment, open_backend(settings.tee_backend, deployment, CONSOLE, sources=sources), CONSOLE
    )
    await keeper.start()
    link = PlatformLink(
        Trust.from_state_dir(settings.state_dir),
        addresses.resolve(settings, "authentication_api"),
        addresses.resolve(settings, "frontend"),
        keeper.current,
    )
    guard = Guard.from_directory(settings.state_dir / "console", secure=secure)
    listener = _listen(settings)
    config = uvicorn.Config(
        make_app(link, guard, settings.rpc.max_message_bytes),
        ssl_certfile=str(certificate) if certificate else None,
        ssl_keyfile=str(key) if key else None,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="off",
        limit_concurrency=MAX_CONNECTIONS,
    )
    server = uvicorn.Server(config)  # it stops on SIGTERM and SIGINT, as the launcher asks
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        url = console_url(settings, listener.getsockname()[1])
        addresses.publish_url(settings, CONSOLE, url)
        addresses.mark_ready(settings, settings.process_name(CONSOLE))
        logger.info("console serving at %s", url)
    try:
        await serving
    finally:
        await asyncio.to_thread(link.close)
        await keeper.stop()


def _listen(settings: Settings) -> socket.socket:
    place = settings.console.address
    host = place.bind_host
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), place.bind_port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{place.bind_port}: {exc.strerror}; change [console] address"
            " (CLOISTER_CONSOLE__ADDRESS)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
