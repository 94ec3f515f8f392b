"""A small threaded HTTP server on 127.0.0.1 (or another loopback address) for file-transfer tests: GET serves files
from a directory, PUT writes the body there, and switches make it answer a given status, redirect, hang, or stall
halfway through a body.

Every request's method, path (with query) and headers are recorded, and every connection accepted is counted, so
tests can check what a client sent, or that it never connected.
Execution services refuse loopback URLs by default, so a test serving files here allows them explicitly with
:data:`LOOPBACK_NETWORKS` (a file agent) or :data:`LOOPBACK_ENV` (a platform).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
"""What ``make run`` allows: the networks of this server and of ``localhost``."""
LOOPBACK_ENV = {"CLOISTER_EXECUTION__ALLOWED_NETWORKS": ",".join(LOOPBACK_NETWORKS)}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body_length: int = 0


@dataclass
class ServerSwitches:
    status: dict[str, int] = field(default_factory=dict)
    """path -> status to answer instead of serving (GET) or storing (PUT)."""
    put_status: int = 200
    redirects: dict[str, str] = field(default_factory=dict)
    """path -> Location answered with 302 (GET) or 307 (PUT)."""
    hang: set[str] = field(default_factory=set)
    """paths never answered (until the server stops)."""
    stall_after: dict[str, int] = field(default_factory=dict)
    """path -> bytes of the body sent before the answer stalls (until the server stops)."""
    wait_for_stall: set[str] = field(default_factory=set)
    """paths answered only once some stalled answer has sent its first bytes."""
    announce_length: bool = True
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    """path -> extra headers sent with the file served there."""


class _Handler(BaseHTTPRequestHandler):
    server: FixtureHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self, body_length: int = 0) -> str:
        self.server.requests.append(
            RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body_length)
        )
        return unquote(urlsplit(self.path).path)

    def _gate(self, path: str) -> bool:
        """Apply the hang/wait switches; False when the server stopped meanwhile."""
        switches = self.server.switches
        if path in switches.hang:
            self.server.stopping.wait()
            return False
        if path in switches.wait_for_stall:
            self.server.stalled.wait()
        return not self.server.stopping.is_set()

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self._record()
        if not self._gate(path):
            return
        switches = self.server.switches
        if path in switches.redirects:
            self._answer(302, headers={"Location": switches.redirects[path]})
            return
        if path in switches.status:
            self._answer(switches.status[path], b"<Error><Code>Forced</Code></Error>")
            return
        file = self.server.root / path.lstrip("/")
        if not file.resolve().is_relative_to(self.server.root.resolve()) or not file.is_file():
            self._answer(404, b"not found")
            return
        data = file.read_bytes()
        self.send_response(200)
        for key, value in switches.headers.get(path, {}).items():
            self.send_header(key, value)
        if switches.announce_length:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if path in switches.stall_after:
            self.wfile.write(data[: switches.stall_after[path]])
            self.wfile.flush()
            self.server.stalled.set()
            self.server.stopping.wait()
            return
        for start in range(0, len(data), 65536):
            self.wfile.write(data[start : start + 65536])
        self.close_connection = True

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        body = self._read_chunked() if chunked else self.rfile.read(length)
        path = self._record(len(body))
        if not self._gate(path):
            return
        switches = self.server.switches
        if path in switches.redirects:
            self._answer(307, headers={"Location": switches.redirects[path]})
            return
        if path in switches.status:
            self._answer(switches.status[path], b"<Error><Code>Forced</Code></Error>")
            return
        file = self.server.root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(body)
        self._answer(switches.put_status)

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return body
            body += self.rfile.read(size)
            self.rfile.readline()


class FixtureHTTPServer(ThreadingHTTPServer):
    """Use as a context manager; :meth:`url` builds URLs to it."""

    daemon_threads = True

    def __init__(self, root: Path, switches: ServerSwitches | None = None, host: str = "127.0.0.1") -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _Handler)
        self.host = host
        self.connections = 0
        self.root = root
        self.switches = switches or ServerSwitches()
        self.requests: list[RecordedRequest] = []
        self.stopping = threading.Event()
        self.stalled = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,), name="fixture-http", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str | None = None) -> str:
        """``path`` on this server, addressed as ``host`` (default: the address it listens on)."""
        host = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{host}:{self.port}/{path.lstrip('/')}"

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        self.connections += 1  # only the serving thread accepts
        super().process_request(request, client_address)

    def __enter__(self) -> FixtureHTTPServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopping.set()
        self.stalled.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
