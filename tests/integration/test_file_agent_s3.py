"""The file agent against S3 presigned URLs (moto behind a signature-checking gate, see ``s3_server``).

The gate listens on loopback, which the agents here are allowed to reach.
"""

from __future__ import annotations

import http.client
import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from async_helpers import run
from http_fixture_server import LOOPBACK_NETWORKS
from s3_server import ACCESS_KEY, BUCKET, S3, running_s3

from cloister.errors import TransferError
from cloister.file_agent import FileAgent, TransferLimits

LIMITS = TransferLimits(max_bytes=64 * 1024 * 1024, timeout_seconds=10)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    with running_s3(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def test_upload_through_a_presigned_put(s3: S3, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 17)
    source = tmp_path / "result.enc"
    source.write_bytes(data)
    url = s3.presign("put_object", "outputs/result.enc")

    async def main() -> None:
        async with FileAgent(tmp_path / "fusion", LIMITS, allowed_networks=LOOPBACK_NETWORKS) as agent:
            await agent.upload(source, url)

    run(main)
    assert s3.client.get_object(Bucket=BUCKET, Key="outputs/result.enc")["Body"].read() == data
    put = s3.gate.seen[-1]
    assert put["method"] == "PUT"
    assert put["headers"]["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in put["headers"]


def test_download_through_a_presigned_get(s3: S3, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    s3.client.put_object(Bucket=BUCKET, Key="inputs/train.enc", Body=data)
    destination = tmp_path / "inputs" / "train" / "train.enc"

    async def main() -> None:
        async with FileAgent(tmp_path / "fusion", LIMITS, allowed_networks=LOOPBACK_NETWORKS) as agent:
            assert await agent.download(s3.presign("get_object", "inputs/train.enc"), destination) == len(data)

    run(main)
    assert destination.read_bytes() == data


@pytest.mark.parametrize("operation", ["get_object", "put_object"])
def test_tampered_signature_is_refused_without_showing_it(operation: str, s3: S3, tmp_path: Path) -> None:
    s3.client.put_object(Bucket=BUCKET, Key="inputs/other.enc", Body=b"data")
    url = s3.presign(operation, "inputs/other.enc")
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    tampered_signature = ("0" if signature[0] != "0" else "1") + signature[1:]
    tampered = url.replace(f"X-Amz-Signature={signature}", f"X-Amz-Signature={tampered_signature}")
    source = tmp_path / "upload.enc"
    source.write_bytes(b"new data")
    caught: list[TransferError] = []

    async def main() -> None:
        async with FileAgent(tmp_path / "fusion", LIMITS, allowed_networks=LOOPBACK_NETWORKS) as agent:
            with pytest.raises(TransferError) as info:
                if operation == "get_object":
                    await agent.download(tampered, tmp_path / "other.enc")
                else:
                    await agent.upload(source, tampered)
            caught.append(info.value)

    run(main)
    message = str(caught[0])
    assert "HTTP 403" in message
    assert "SignatureDoesNotMatch" in message
    shown = "".join(traceback.format_exception(caught[0]))
    for secret in (tampered_signature, signature, ACCESS_KEY, "X-Amz-Credential"):
        assert secret not in shown
    assert not (tmp_path / "other.enc").exists()
    assert s3.client.get_object(Bucket=BUCKET, Key="inputs/other.enc")["Body"].read() == b"data"


def test_the_gate_refuses_chunked_uploads_as_s3_does(s3: S3) -> None:
    """The PUT test above means something only if a chunked upload would have failed."""
    url = s3.presign("put_object", "outputs/chunked.enc")
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("PUT", f"{parts.path}?{parts.query}", body=iter([b"abc"]), encode_chunked=True)
        assert connection.getresponse().status == 501
    finally:
        connection.close()
