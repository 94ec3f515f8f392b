"""Fetching a peer's certificate before trusting it: the answer, and no leaked socket when the peer
resets the connection at once (a server killed as it accepts)."""

from __future__ import annotations

import gc
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from attestation_helpers import self_signed_certificate
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.errors import UnavailableError
from cloister.rpc.channel import fetch_certificate


def _self_signed(directory: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(key, "peer")
    cert_path, key_path = directory / "peer.pem", directory / "peer.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def listener() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """Start a one-connection-at-a-time server whose handler gets each accepted socket."""
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(handle: Callable[[socket.socket], None]) -> str:
        server = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                with connection:
                    handle(connection)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"127.0.0.1:{server.getsockname()[1]}"

    yield start
    for server, thread in servers:
        server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        server.close()
        thread.join(timeout=5)


def test_the_certificate_a_tls_peer_presents_is_returned(tmp_path: Path, listener) -> None:  # type: ignore[no-untyped-def]
    cert_path, key_path, der = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)

    def handshake(connection: socket.socket) -> None:
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    assert fetch_certificate(listener(handshake), None) == der


def _close_after_hello(connection: socket.socket) -> None:
    connection.recv(65536)


def test_a_peer_gone_mid_handshake_is_unavailable_and_leaks_no_socket(listener) -> None:  # type: ignore[no-untyped-def]
    address = listener(_close_after_hello)
    for _ in range(5):
        with pytest.raises(UnavailableError, match=f"cannot reach {address}"):
            fetch_certificate(address, None, timeout=5)
    gc.collect()  # a leaked socket warns here, and filterwarnings turns that into a failure


def test_a_peer_that_resets_before_tls_starts_leaks_no_socket(
    listener,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server accepts and resets the connection before the client's first TLS byte (it was
    killed as it accepted): the connection is already gone when the handshake begins."""
    reset = threading.Event()

    def reset_at_once(connection: socket.socket) -> None:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
        reset.set()

    connect = socket.create_connection

    def connect_then_wait_for_the_reset(*args: object, **kwargs: object) -> socket.socket:
        raw = connect(*args, **kwargs)  # type: ignore[arg-type]
        assert reset.wait(5)
        reset.clear()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                raw.getpeername()
            except OSError:
                break  # the reset has arrived
            time.sleep(0.01)
        return raw

    monkeypatch.setattr(socket, "create_connection", connect_then_wait_for_the_reset)
    address = listener(reset_at_once)
    for _ in range(5):
        with pytest.raises(UnavailableError, match=f"cannot reach {address}"):
            fetch_certificate(address, None, timeout=5)
    gc.collect()  # a leaked socket warns here, and filterwarnings turns that into a failure
