"""URLs cannot reach inside: the file agent refuses internal addresses unless their network is allowed.

Real HTTP servers on loopback play the internal servers; a refused transfer must not even connect to them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from async_helpers import run
from http_fixture_server import LOOPBACK_NETWORKS, FixtureHTTPServer, ServerSwitches

from cloister.errors import TransferError
from cloister.file_agent import FileAgent, TransferLimits

SETTING = "allow it with [execution] allowed_networks (CLOISTER_EXECUTION__ALLOWED_NETWORKS)"
SECRET_QUERY = "?X-Amz-Signature=topsecret"


def agent_call(
    tmp_path: Path,
    call: Callable[[FileAgent], Awaitable[object]],
    allowed: tuple[str, ...] = (),
    timeout: float = 5.0,
) -> TransferError | None:
    """Run ``call`` on a fresh agent allowing ``allowed``: the TransferError it raised, or None."""
    caught: list[TransferError] = []

    async def main() -> None:
        limits = TransferLimits(max_bytes=1 << 20, timeout_seconds=timeout)
        async with FileAgent(tmp_path / "fusion", limits, allowed_networks=allowed) as agent:
            try:
                await call(agent)
            except TransferError as exc:
                caught.append(exc)

    run(main)
    return caught[0] if caught else None


def assert_refused(error: TransferError | None, prefix: str, reason: str) -> None:
    """``error`` is the policy's refusal: the transfer, the reason, the setting, and nothing of the URL's query."""
    assert error is not None
    assert re.fullmatch(f"{re.escape(prefix)}{reason}, which tasks may not reach; {re.escape(SETTING)}", error.message)
    assert "topsecret" not in str(error)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    (root / "secret.txt").write_bytes(b"internal secret")
    return root


@pytest.fixture
def result(tmp_path: Path) -> Path:
    source = tmp_path / "result.bin"
    source.write_bytes(b"attacker-chosen bytes")
    return source


# How the URL names the server, the address the server listens on, and the reason the agent gives.
LOOPBACK_FORMS = [
    pytest.param("127.0.0.1", "127.0.0.1", r"127\.0\.0\.1 is a loopback address", id="ipv4"),
    pytest.param("[::ffff:127.0.0.1]", "127.0.0.1", r"::ffff:127\.0\.0\.1 is a loopback address", id="ipv4-mapped"),
    pytest.param(
        "localhost", "127.0.0.1", r"localhost resolves to a loopback address \((?:127\.0\.0\.1|::1)\)", id="name"
    ),
]


# [::1] is refused before any connection, so a server on 127.0.0.1 stands guard that none is made
# (not every machine has IPv6 loopback); tests/unit/file_agent/test_network.py shows [::1] reached
# when allowed.
IPV6_LOOPBACK = pytest.param("[::1]", "127.0.0.1", r"::1 is a loopback address", id="ipv6")


@pytest.mark.parametrize(("host", "listen", "reason"), [*LOOPBACK_FORMS, IPV6_LOOPBACK])
def test_loopback_is_refused_by_default(
    host: str, listen: str, reason: str, served: Path, result: Path, tmp_path: Path
) -> None:
    with FixtureHTTPServer(served, host=listen) as server:
        base = server.url("", host=host)
        target = tmp_path / "got" / "secret.txt"
        down = agent_call(tmp_path, lambda agent: agent.download(f"{base}secret.txt{SECRET_QUERY}", target))
        up = agent_call(tmp_path, lambda agent: agent.upload(result, f"{base}out/result.bin{SECRET_QUERY}"))
    assert server.connections == 0 and server.requests == []
    assert_refused(down, f"download of {base}secret.txt failed: ", reason)
    assert_refused(up, f"upload to {base}out/result.bin failed: ", reason)
    assert not target.exists() and not (served / "out").exists()


@pytest.mark.parametrize(("host", "listen", "reason"), LOOPBACK_FORMS)
def test_loopback_is_reachable_when_allowed(
    host: str, listen: str, reason: str, served: Path, result: Path, tmp_path: Path
) -> None:
    with FixtureHTTPServer(served, host=listen) as server:
        base = server.url("", host=host)
        target = tmp_path / "got" / "secret.txt"
        allowed = LOOPBACK_NETWORKS
        assert agent_call(tmp_path, lambda agent: agent.download(f"{base}secret.txt", target), allowed) is None
        assert agent_call(tmp_path, lambda agent: agent.upload(result, f"{base}out/result.bin"), allowed) is None
    assert target.read_bytes() == b"internal secret"
    assert (served / "out" / "result.bin").read_bytes() == b"attacker-chosen bytes"
    assert [request.method for request in server.requests] == ["GET", "PUT"]


def test_allowing_one_loopback_network_does_not_allow_the_other(served: Path, tmp_path: Path) -> None:
    with FixtureHTTPServer(served) as server:
        url = server.url("secret.txt", host="localhost")
        error = agent_call(tmp_path, lambda agent: agent.download(url, tmp_path / "a"), allowed=("::1/128",))
    assert server.connections == 0
    assert_refused(error, f"download of {url} failed: ", r"localhost resolves to a loopback address \(127\.0\.0\.1\)")


PRIVATE = "10.255.255.1"
"""A private address with, on a test machine, nothing behind it."""


def test_a_private_address_is_refused_without_connecting(tmp_path: Path) -> None:
    url = f"http://{PRIVATE}:9/secret.txt"
    error = agent_call(tmp_path, lambda agent: agent.download(url, tmp_path / "a"))
    assert_refused(error, f"download of {url} failed: ", r"10\.255\.255\.1 is a private address")
    # That no connection was even tried is shown with a recording network in test_network.py.


def test_an_allowed_private_address_is_connected_to(tmp_path: Path, result: Path) -> None:
    url = f"http://{PRIVATE}:9/secret.txt"
    allowed = ("10.0.0.0/8",)
    for call in (
        lambda agent: agent.download(url, tmp_path / "a"),
        lambda agent: agent.upload(result, url),
    ):
        error = agent_call(tmp_path, call, allowed, timeout=0.5)
        assert error is not None
        # The agent tried to connect: usually nothing answers there, a connection error rather than the policy's
        # refusal; a network that intercepts every connection (some CI sandboxes do) answers with an HTTP error.
        host = re.escape(f"{PRIVATE}:9")
        tried = rf"timed out after 0\.5 s connecting to {host}|cannot reach {host}|the server answered"
        assert re.search(tried, error.message), error.message
        assert "may not reach" not in error.message


@pytest.fixture
def internal(served: Path) -> Iterator[FixtureHTTPServer]:
    with FixtureHTTPServer(served) as server:
        yield server


@pytest.mark.parametrize(
    ("target_host", "reason"),
    [
        ("127.0.0.1", r"127\.0\.0\.1 is a loopback address"),
        ("localhost", r"localhost resolves to a loopback address \(127\.0\.0\.1\)"),
    ],
)
def test_a_redirect_to_loopback_is_refused(
    internal: FixtureHTTPServer, target_host: str, reason: str, tmp_path: Path
) -> None:
    """The redirecting server's network is allowed; the one it redirects to is not."""
    target = internal.url("secret.txt", host=target_host)
    redirector_root = tmp_path / "redirector"
    redirector_root.mkdir()
    with FixtureHTTPServer(redirector_root, ServerSwitches(redirects={"/r": target}), host="127.0.0.2") as redirector:
        url = redirector.url("r") + SECRET_QUERY
        got = tmp_path / "got"
        refused = agent_call(tmp_path, lambda agent: agent.download(url, got), allowed=("127.0.0.2/32",))
        assert [request.method for request in redirector.requests] == ["GET"]
        assert internal.connections == 0
        assert_refused(refused, f"download of {redirector.url('r')} failed: after a redirect, ", reason)
        assert not got.exists()

        allowed = ("127.0.0.2/32", "127.0.0.1/32")
        assert agent_call(tmp_path, lambda agent: agent.download(url, got), allowed) is None
    assert got.read_bytes() == b"internal secret"
    assert [request.path for request in internal.requests] == ["/secret.txt"]
