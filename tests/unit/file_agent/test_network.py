"""The guarded network backend: one resolution per connection, every address checked, the checked address connected.

A recording backend stands in for the network where the address would be a real Internet host; the tests that
need a real socket use a loopback server and a resolver that answers a name the system cannot resolve, so only
a connection made to the resolved address can succeed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from async_helpers import run
from http_fixture_server import FixtureHTTPServer

from cloister.file_agent import remote
from cloister.file_agent.addresses import AddressPolicy, AddressRefusedError
from cloister.file_agent.network import GuardedBackend, GuardedTransport

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ScriptedResolver:
    """Answers each resolution with the next of ``answers`` (the last one repeats), counting the calls."""

    def __init__(self, *answers: Sequence[str] | BaseException) -> None:
        self._answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


class _RecordingStream(httpcore.AsyncMockStream):
    def __init__(self, backend: RecordingBackend) -> None:
        super().__init__([OK_RESPONSE])
        self._backend = backend

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        self._backend.server_hostnames.append(server_hostname)
        return self


@dataclass
class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Connects nowhere: records each connection asked of it and answers it with one HTTP 200."""

    refuse: set[str] = field(default_factory=set)
    connected: list[tuple[str, int]] = field(default_factory=list)
    server_hostnames: list[str | None] = field(default_factory=list)

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        if host in self.refuse:
            raise httpcore.ConnectError("Connection refused")
        return _RecordingStream(self)


def connect(backend: GuardedBackend, host: str, port: int = 80, timeout: float | None = 5) -> None:
    async def main() -> None:
        stream = await backend.connect_tcp(host, port, timeout=timeout)
        await stream.aclose()

    run(main)


def test_dns_rebinding_connects_to_the_address_that_was_checked() -> None:
    """The attacker's DNS answers a global address first and loopback afterwards; loopback is never connected."""
    resolver = ScriptedResolver(["93.184.215.14"], ["127.0.0.1"])
    network = RecordingBackend()
    backend = GuardedBackend(AddressPolicy(), resolver, network)
    connect(backend, "rebind.example", 8080)
    assert resolver.calls == [("rebind.example", 8080)]  # resolved once for the check and the connection
    assert network.connected == [("93.184.215.14", 8080)]  # an address, never the name
    with pytest.raises(AddressRefusedError, match=r"rebind\.example resolves to a loopback address \(127\.0\.0\.1\)"):
        connect(backend, "rebind.example", 8080)
    assert len(resolver.calls) == 2
    assert network.connected == [("93.184.215.14", 8080)]


def test_one_refused_address_means_no_connection_at_all() -> None:
    network = RecordingBackend()
    backend = GuardedBackend(AddressPolicy(), ScriptedResolver(["8.8.8.8", "2606:4700::1111", "10.0.0.7"]), network)
    with pytest.raises(AddressRefusedError, match=r"resolves to a private address \(10\.0\.0\.7\)"):
        connect(backend, "mixed.example")
    assert network.connected == []


def test_addresses_are_connected_without_resolving() -> None:
    resolver = ScriptedResolver(OSError("must not resolve"))
    network = RecordingBackend()
    with pytest.raises(AddressRefusedError, match=r"^10\.1\.2\.3 is a private address"):
        connect(GuardedBackend(AddressPolicy(), resolver, network), "10.1.2.3")
    connect(GuardedBackend(AddressPolicy.from_cidrs(["10.0.0.0/8"]), resolver, network), "10.1.2.3")
    connect(GuardedBackend(AddressPolicy(), resolver, network), "2606:4700::1111", 443)
    assert resolver.calls == []
    assert network.connected == [("10.1.2.3", 80), ("2606:4700::1111", 443)]


def test_ipv6_loopback_is_refused_unless_allowed_then_connected_as_given() -> None:
    network = RecordingBackend()
    with pytest.raises(AddressRefusedError, match=r"^::1 is a loopback address"):
        connect(GuardedBackend(AddressPolicy(), ScriptedResolver(), network), "::1")
    assert network.connected == []
    connect(GuardedBackend(AddressPolicy.from_cidrs(["::1/128"]), ScriptedResolver(), network), "::1", 8000)
    assert network.connected == [("::1", 8000)]


def test_a_failed_address_falls_back_to_the_next_checked_one() -> None:
    network = RecordingBackend(refuse={"2606:4700::1111"})
    backend = GuardedBackend(AddressPolicy(), ScriptedResolver(["2606:4700::1111", "1.1.1.1"]), network)
    connect(backend, "dual.example")
    assert network.connected == [("2606:4700::1111", 80), ("1.1.1.1", 80)]
    network.refuse.add("1.1.1.1")
    with pytest.raises(httpcore.ConnectError, match="refused"):
        connect(backend, "dual.example")


def test_resolution_failures_are_connection_errors() -> None:
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    backend = GuardedBackend(AddressPolicy(), ScriptedResolver(unknown), RecordingBackend())
    with pytest.raises(httpcore.ConnectError, match="Name or service not known"):
        connect(backend, "nowhere.example")
    with pytest.raises(httpcore.ConnectError, match="no IP address"):
        connect(GuardedBackend(AddressPolicy(), ScriptedResolver([]), RecordingBackend()), "empty.example")

    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return ["8.8.8.8"]

    with pytest.raises(httpcore.ConnectTimeout):
        connect(GuardedBackend(AddressPolicy(), slow, RecordingBackend()), "slow.example", timeout=0.05)


def test_tls_names_the_host_of_the_url_while_connecting_to_its_address() -> None:
    network = RecordingBackend()
    backend = GuardedBackend(AddressPolicy(), ScriptedResolver(["93.184.215.14"]), network)

    async def main() -> None:
        transport = GuardedTransport(backend, limits=httpx.Limits())
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get("https://files.example/x")
            assert response.content == b"ok"

    run(main)
    assert network.connected == [("93.184.215.14", 443)]
    assert network.server_hostnames == ["files.example"]  # certificate checked against, and SNI sent for, the name


def test_the_client_connects_to_the_resolved_address_not_the_name(tmp_path: Path) -> None:
    """``files.test`` exists only in this resolver: had the name reached the socket layer, connecting would fail."""
    (tmp_path / "x").write_bytes(b"served")
    with FixtureHTTPServer(tmp_path) as server:
        resolver = ScriptedResolver(["127.0.0.1"])

        async def main() -> None:
            async with remote.new_client(5, AddressPolicy.from_cidrs(["127.0.0.1/32"]), resolver) as client:
                response = await client.get(server.url("x", host="files.test"))
                assert response.content == b"served"

        run(main)
    assert resolver.calls == [("files.test", server.port)]
    assert server.requests[0].headers["host"] == f"files.test:{server.port}"


def test_environment_proxies_are_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would connect on the client's behalf, past the check."""
    with FixtureHTTPServer(tmp_path) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)

        async def main() -> None:
            async with remote.new_client(5, AddressPolicy()) as client:
                with pytest.raises(AddressRefusedError, match=r"198\.51\.100\.7 is a reserved address"):
                    await client.get("http://198.51.100.7/x")

        run(main)
    assert proxy.connections == 0


def test_a_transport_httpx_builds_differently_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should httpx stop keeping its pool in ``_pool``, the guard fails to build rather than go missing."""

    def elsewhere(self: httpx.AsyncHTTPTransport, **kwargs: Any) -> None:
        self._pool_elsewhere = None  # type: ignore[attr-defined]

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "__init__", elsewhere)
    with pytest.raises(RuntimeError, match="cannot guard"):
        GuardedTransport(GuardedBackend(AddressPolicy()), limits=httpx.Limits())
