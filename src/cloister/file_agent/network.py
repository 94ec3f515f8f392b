"""The connections the file agent's HTTP client makes: each host resolved once, every address it resolves to
checked against the :class:`~cloister.file_agent.addresses.AddressPolicy`, and the connection made to an address
that was checked.

Checking a URL's host before handing the URL to httpx would not do: httpx resolves the name again to connect, and
an attacker's DNS can answer a global address to the check and 127.0.0.1 to the connection (DNS rebinding), while
a redirect would escape a check made once per URL. So the check sits in httpcore's network backend, which every
connection goes through, redirect targets included, and which connects to IP addresses, never to names. TLS is
unaffected: httpcore verifies the certificate against, and sends SNI for, the host name in the URL.
"""

from __future__ import annotations

import asyncio
import socket
import typing
from collections.abc import Awaitable, Callable, Sequence

import httpcore
import httpx

from cloister.file_agent.addresses import AddressPolicy, IPAddress, parse_address

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``: what a host name resolves to, as IP address strings."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``host``, each once, in its order."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses ``policy`` allows.

    Args:
        policy: which addresses may be reached.
        resolver: turns a host name into addresses; called once per connection.
        inner: the backend that makes the connection, always given an IP address (default: httpcore's anyio one).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, refuse it unless every address is allowed, then connect to the first that answers.

        Raises:
            AddressRefusedError: an address ``host`` resolves to may not be reached; nothing was connected.
            httpcore.ConnectError, httpcore.ConnectTimeout: resolving or connecting failed.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        addresses = await self._addresses(host, port, timeout)
        self._policy.check(host, addresses)
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=remaining, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # _addresses returns at least one
        raise failure

    async def _addresses(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        literal = parse_address(host)
        if literal is not None:
            return [literal]
        try:
            async with asyncio.timeout(timeout):
                found = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout("resolving the host name took too long") from None
        except OSError as exc:  # socket.gaierror: its text names no host
            raise httpcore.ConnectError(str(exc)) from exc
        addresses = [parse_address(text) for text in found]
        if not addresses or None in addresses:
            raise httpcore.ConnectError("the host name resolved to no IP address")
        return [address for address in addresses if address is not None]

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connection pool connecting through a :class:`GuardedBackend`.

    httpx (0.25.1 to 0.28) takes no network backend: its transport builds an ``httpcore.AsyncConnectionPool`` in
    ``_pool`` and hands it every request. This replaces that pool with one built the same way around the guarded
    backend. Keeping httpx's transport, rather than writing one over httpcore, keeps httpx's translation of requests,
    responses and httpcore's errors, which the file agent's messages depend on. Should an httpx release keep its
    pool elsewhere, construction fails instead of leaving the guard out.
    """

    def __init__(self, backend: GuardedBackend, limits: httpx.Limits) -> None:
        super().__init__(verify=True, trust_env=False, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version builds its transport differently; cannot guard its connections")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=True, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
