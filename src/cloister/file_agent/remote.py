"""``http``/``https`` transfers: a streamed GET into a new file, a streamed PUT with a Content-Length (§11.2).

The PUT body is an async generator *and* carries an explicit Content-Length, which makes httpx send it with
length framing rather than chunked transfer encoding: S3 presigned PUT URLs refuse chunked uploads. Bodies are
taken raw (``Accept-Encoding: identity``), as reqwest in Teaclave did, so the bytes written are the bytes served.
Every connection, a redirect's included, goes through :class:`~cloister.file_agent.network.GuardedTransport`, so
it reaches only addresses the agent's :class:`~cloister.file_agent.addresses.AddressPolicy` allows.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import SplitResult

import httpx

from cloister.errors import TransferError
from cloister.file_agent.addresses import AddressPolicy, AddressRefusedError
from cloister.file_agent.local import too_large
from cloister.file_agent.local_io import CHUNK_BYTES, open_new_file, open_reader
from cloister.file_agent.network import GuardedBackend, GuardedTransport, Resolver, system_resolver
from cloister.file_agent.urls import display_host

MAX_REDIRECTS = 5
"""Redirects followed on download; uploads follow none."""
UPLOAD_CONTENT_TYPE = "application/x-binary"

_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own defaults for a client, which a client given a transport does not apply."""
_ERROR_BODY_BYTES = 4096
# S3 error documents say what failed in <Code>; the rest of the body can echo the signature, so only this is kept.
_S3_CODE = re.compile(rb"<Code>([A-Za-z]{1,64})</Code>")


def client_timeout(seconds: float) -> httpx.Timeout:
    """The same inactivity limit for connecting, reading, writing and waiting for a pooled connection."""
    return httpx.Timeout(connect=seconds, read=seconds, write=seconds, pool=seconds)


def check_http_url(parts: SplitResult) -> None:
    """Refuse what httpx would report confusingly: no host, or a port out of range."""
    if not parts.hostname:
        raise TransferError("the URL names no host")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise TransferError("the URL's port is not a number from 0 to 65535") from None


def new_client(
    timeout_seconds: float, policy: AddressPolicy, resolver: Resolver = system_resolver
) -> httpx.AsyncClient:
    """The client a file agent owns: connections only where ``policy`` allows, no redirects unless asked, no proxy
    or CA settings from the environment (a proxy would connect on the client's behalf, unchecked)."""
    transport = GuardedTransport(GuardedBackend(policy, resolver), limits=_LIMITS)
    return httpx.AsyncClient(
        transport=transport,
        timeout=client_timeout(timeout_seconds),
        follow_redirects=False,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    )


def _reason(exc: Exception) -> str:
    """What the operating system said, else the exception's text unless it might quote a URL (and its query)."""
    cause: BaseException | None = exc
    for _ in range(10):  # httpx wraps httpcore, which wraps the socket error: "Connection refused" is down there
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno is not None and cause.errno > 0:
            return os.strerror(cause.errno)
        if isinstance(cause, socket.gaierror) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()
    if not text or "://" in text or "?" in text or "@" in text:
        return type(exc).__name__
    return text


def describe_http_error(exc: Exception, parts: SplitResult, timeout_seconds: float) -> str:
    """What went wrong, in words a user can act on, naming no part of the URL but its host."""
    host = display_host(parts)
    limit = f"{timeout_seconds:g} s"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out after {limit} connecting to {host}"
    if isinstance(exc, httpx.ReadTimeout):
        return f"timed out after {limit} waiting for {host} to answer"
    if isinstance(exc, httpx.WriteTimeout):
        return f"timed out after {limit} sending to {host}"
    if isinstance(exc, httpx.PoolTimeout):
        return f"timed out after {limit} waiting for a free connection to {host}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {host}: {_reason(exc)}"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "redirected to a URL that is not http(s)"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the connection to {host} broke: {_reason(exc)}"
    if isinstance(exc, httpx.NetworkError):
        return f"the connection to {host} failed: {_reason(exc)}"
    if isinstance(exc, httpx.InvalidURL):
        return "the URL is not a valid http(s) URL"
    return f"the HTTP transfer failed: {_reason(exc)}"


async def _status_error(response: httpx.Response, action: str) -> TransferError:
    """The error for an unwanted status, with S3's error code when the body has one."""
    head = b""
    try:
        async for chunk in response.aiter_raw():
            head += chunk
            if len(head) >= _ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        pass
    match = _S3_CODE.search(head[:_ERROR_BODY_BYTES])
    code = f" ({match.group(1).decode()})" if match else ""
    phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
    return TransferError(f"the server answered {action} with HTTP {response.status_code}{phrase}{code}")


async def http_download(
    client: httpx.AsyncClient, url: str, destination: Path, *, max_bytes: int, timeout_seconds: float
) -> int:
    """GET ``url`` into the new file ``destination``, following at most :data:`MAX_REDIRECTS` redirects."""
    async with open_new_file(destination) as writer:
        request = client.build_request(
            "GET", url, headers={"Accept-Encoding": "identity"}, timeout=client_timeout(timeout_seconds)
        )
        for hop in range(MAX_REDIRECTS + 1):
            try:
                response = await client.send(request, stream=True, follow_redirects=False)
            except AddressRefusedError as exc:
                if hop == 0:
                    raise
                raise AddressRefusedError(f"after a redirect, {exc.message}") from None
            try:
                if response.next_request is not None:
                    if hop == MAX_REDIRECTS:
                        raise TransferError(f"more than {MAX_REDIRECTS} redirects")
                    request = response.next_request
                    continue
                if not response.is_success:
                    raise await _status_error(response, "GET")
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > max_bytes:
                    raise too_large(max_bytes, int(announced))
                async for chunk in response.aiter_raw(CHUNK_BYTES):
                    if writer.written + len(chunk) > max_bytes:
                        raise too_large(max_bytes)
                    await writer.write(chunk)
                return writer.written
            finally:
                await response.aclose()
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def http_upload(
    client: httpx.AsyncClient, source: Path, url: str, *, max_bytes: int, timeout_seconds: float
) -> None:
    """PUT ``source`` to ``url`` with its length announced; any 2xx answer is success, redirects are not followed."""
    async with open_reader(source) as reader:
        size = reader.size
        if size > max_bytes:
            raise too_large(max_bytes, size)
        request = client.build_request(
            "PUT",
            url,
            headers={"Content-Type": UPLOAD_CONTENT_TYPE, "Content-Length": str(size)},
            content=reader.chunks(),
            timeout=client_timeout(timeout_seconds),
        )
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            if not response.is_success:
                error = await _status_error(response, "PUT")
                if response.is_redirect:
                    error = TransferError(f"{error.message}; uploads do not follow redirects")
                raise error
        finally:
            await response.aclose()
