"""An S3-compatible server for tests: a real ``moto_server`` process holds the bucket.

moto does not check the signature of a presigned URL, which S3 does, so the presigned URLs point at a small gate in
front of moto that does what S3 does on that path: verify the SigV4 query signature (answering 403
SignatureDoesNotMatch with the provided signature echoed in the body, as S3 does) and refuse chunked uploads (501
NotImplemented). Everything else is forwarded to moto unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import boto3
from botocore.config import Config

ACCESS_KEY = "AKIDCLOISTERTEST"
SECRET_KEY = "cloister-test-secret-key"
BUCKET = "cloister-files"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # start-up of an external process: nothing to wait on but the port
    raise RuntimeError(f"moto_server did not listen on {port}: {log.read_text()}")


def _sigv4_query_signature(method: str, raw_path: str, query: list[tuple[str, str]], headers: Any) -> str:
    """The signature S3 expects for a presigned (query-string) SigV4 request."""
    params = {key: value for key, value in query}
    pairs = sorted((key, value) for key, value in query if key != "X-Amz-Signature")
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    signed = params["X-Amz-SignedHeaders"].split(";")
    canonical_headers = "".join(f"{name}:{(headers.get(name) or '').strip()}\n" for name in signed)
    canonical_request = "\n".join(
        [method, raw_path, canonical_query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"]
    )
    _, date, region, service, terminator = params["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/{terminator}"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{SECRET_KEY}".encode()
    for part in (date, region, service, terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class _GateHandler(BaseHTTPRequestHandler):
    server: _SignatureGate

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _refuse(self, status: int, code: str, extra: str = "") -> None:
        body = f"<Error><Code>{code}</Code><Message>refused by the test gate</Message>{extra}</Error>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drain_chunked(self) -> None:
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            self.rfile.read(size + 2)
        self.rfile.readline()

    def _handle(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        query = parse_qsl(raw_query, keep_blank_values=True)
        provided = dict(query).get("X-Amz-Signature")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self.server.seen.append({"method": self.command, "headers": dict(self.headers.items())})
        if chunked:
            self._drain_chunked()
            self._refuse(501, "NotImplemented")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if provided is not None:
            expected = _sigv4_query_signature(self.command, raw_path, query, self.headers)
            if not hmac.compare_digest(expected, provided):
                self._refuse(403, "SignatureDoesNotMatch", f"<SignatureProvided>{provided}</SignatureProvided>")
                return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.moto_port, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
            upstream.request(self.command, self.path, body=body if self.command == "PUT" else None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()


class _SignatureGate(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, moto_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _GateHandler)
        self.moto_port = moto_port
        self.seen: list[dict[str, Any]] = []


@dataclass
class S3:
    client: Any
    presigner: Any
    gate: _SignatureGate

    def presign(self, operation: str, key: str) -> str:
        return self.presigner.generate_presigned_url(operation, Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@contextlib.contextmanager
def running_s3(log: Path) -> Iterator[S3]:
    """moto on a free port with the signature gate in front; stopped on exit."""
    port = _free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
        )
    gate = _SignatureGate(port)
    thread = threading.Thread(target=gate.serve_forever, args=(0.05,), daemon=True)
    try:
        _wait_for_port(port, process, log)
        thread.start()
        client = _client(f"http://127.0.0.1:{port}")
        client.create_bucket(Bucket=BUCKET)
        yield S3(client, _client(f"http://127.0.0.1:{gate.server_address[1]}"), gate)
    finally:
        if thread.is_alive():
            gate.shutdown()
        gate.server_close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
