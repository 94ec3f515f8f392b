"""Each URL scheme both ways against real local files and a real HTTP server on 127.0.0.1 (reference §11.2).

The agents here may reach loopback, as ``make run``'s do; what they may not reach is tested in
``test_file_agent_addresses.py``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from async_helpers import run
from http_fixture_server import LOOPBACK_NETWORKS, FixtureHTTPServer, ServerSwitches

from cloister.config import ExecutionSettings
from cloister.errors import StatusCode, TransferError
from cloister.file_agent import FileAgent, TransferLimits

MiB = 1024 * 1024


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def server(served: Path) -> Iterator[FixtureHTTPServer]:
    with FixtureHTTPServer(served) as running:
        yield running


@pytest.fixture
def fusion(tmp_path: Path) -> Path:
    base = tmp_path / "fusion"
    base.mkdir()
    return base


def with_agent(
    fusion: Path,
    body: Callable[[FileAgent], Awaitable[None]],
    *,
    max_bytes: int = 64 * MiB,
    timeout: float = 5.0,
    file_roots: tuple[Path, ...] = (),
    allowed_networks: tuple[str, ...] = LOOPBACK_NETWORKS,
) -> None:
    async def main() -> None:
        limits = TransferLimits(max_bytes=max_bytes, timeout_seconds=timeout)
        roots = file_roots or (fusion.parent,)
        async with FileAgent(fusion, limits, file_roots=roots, allowed_networks=allowed_networks) as agent:
            await body(agent)

    run(main)


def transfer_error(fusion: Path, call: Callable[[FileAgent], Awaitable[object]], **limits: float) -> TransferError:
    caught: list[TransferError] = []

    async def body(agent: FileAgent) -> None:
        with pytest.raises(TransferError) as info:
            await call(agent)
        caught.append(info.value)

    with_agent(fusion, body, **limits)  # type: ignore[arg-type]
    assert caught[0].status is StatusCode.UNAVAILABLE
    return caught[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- http / https ---------------------------------------------------------------------------------------------------


def test_http_get_streams_the_body_to_a_new_file(server: FixtureHTTPServer, served: Path, fusion: Path) -> None:
    data = os.urandom(3 * MiB + 5)
    (served / "big.bin").write_bytes(data)
    target = fusion.parent / "inputs" / "k" / "big.bin"

    async def body(agent: FileAgent) -> None:
        assert await agent.download(server.url("big.bin"), target) == len(data)

    with_agent(fusion, body)
    assert target.read_bytes() == data
    assert server.requests[0].headers["accept-encoding"] == "identity"


def test_http_get_without_content_length(served: Path, fusion: Path) -> None:
    (served / "a.txt").write_bytes(b"no length announced")
    target = fusion.parent / "a.txt"
    with FixtureHTTPServer(served, ServerSwitches(announce_length=False)) as server:
        with_agent(fusion, lambda agent: agent.download(server.url("a.txt"), target))  # type: ignore[arg-type,return-value]
    assert target.read_bytes() == b"no length announced"


def test_http_get_404_names_the_status_and_leaves_nothing(server: FixtureHTTPServer, fusion: Path) -> None:
    target = fusion.parent / "missing.txt"
    error = transfer_error(fusion, lambda agent: agent.download(server.url("missing.txt"), target))
    assert "HTTP 404" in str(error)
    assert str(error).startswith(f"download of {server.url('missing.txt')} failed")
    assert not target.exists()


def test_http_get_follows_redirects_up_to_five(served: Path, fusion: Path) -> None:
    (served / "final.txt").write_bytes(b"arrived")
    hops = {f"/r{i}": f"/r{i + 1}" for i in range(4)} | {"/r4": "/final.txt", "/loop": "/loop"}
    with FixtureHTTPServer(served, ServerSwitches(redirects=hops)) as server:
        with_agent(fusion, lambda agent: agent.download(server.url("r0"), fusion.parent / "ok"))  # type: ignore[arg-type,return-value]
        error = transfer_error(fusion, lambda agent: agent.download(server.url("loop"), fusion.parent / "loop"))
    assert (fusion.parent / "ok").read_bytes() == b"arrived"
    assert "more than 5 redirects" in str(error)
    assert not (fusion.parent / "loop").exists()


def test_http_put_sends_content_length_not_chunked(server: FixtureHTTPServer, served: Path, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB + 3)
    source = tmp_path / "out.bin"
    source.write_bytes(data)
    with_agent(tmp_path / "fusion", lambda agent: agent.upload(source, server.url("results/out.bin?sig=1")))
    assert (served / "results" / "out.bin").read_bytes() == data
    (put,) = server.requests
    assert put.method == "PUT"
    assert put.headers["content-length"] == str(len(data))
    assert put.headers["content-type"] == "application/x-binary"
    assert "transfer-encoding" not in put.headers


def test_http_put_of_an_empty_file(server: FixtureHTTPServer, served: Path, tmp_path: Path) -> None:
    source = tmp_path / "empty"
    source.write_bytes(b"")
    with_agent(tmp_path / "fusion", lambda agent: agent.upload(source, server.url("empty")))
    assert (served / "empty").read_bytes() == b""
    assert server.requests[0].headers["content-length"] == "0"


@pytest.mark.parametrize("status", [201, 204])
def test_http_put_accepts_any_2xx(status: int, served: Path, tmp_path: Path) -> None:
    source = tmp_path / "out"
    source.write_bytes(b"result")
    with FixtureHTTPServer(served, ServerSwitches(put_status=status)) as server:
        with_agent(tmp_path / "fusion", lambda agent: agent.upload(source, server.url("out")))
    assert (served / "out").read_bytes() == b"result"


def test_http_put_403_names_the_status(served: Path, tmp_path: Path) -> None:
    source = tmp_path / "out"
    source.write_bytes(b"result")
    with FixtureHTTPServer(served, ServerSwitches(status={"/out": 403})) as server:
        error = transfer_error(tmp_path / "fusion", lambda agent: agent.upload(source, server.url("out")))
    assert "HTTP 403 Forbidden" in str(error)
    assert "(Forced)" in str(error)  # the S3-style <Code> of the error body


def test_http_put_does_not_follow_redirects(served: Path, tmp_path: Path) -> None:
    source = tmp_path / "out"
    source.write_bytes(b"result")
    with FixtureHTTPServer(served, ServerSwitches(redirects={"/out": "/elsewhere"})) as server:
        error = transfer_error(tmp_path / "fusion", lambda agent: agent.upload(source, server.url("out")))
        assert [request.path for request in server.requests] == ["/out"]
    assert "HTTP 307" in str(error)
    assert "do not follow redirects" in str(error)


def test_server_that_never_answers_times_out(served: Path, fusion: Path, tmp_path: Path) -> None:
    source = tmp_path / "out"
    source.write_bytes(b"result")
    target = tmp_path / "never"
    with FixtureHTTPServer(served, ServerSwitches(hang={"/slow"})) as server:
        down = transfer_error(fusion, lambda agent: agent.download(server.url("slow"), target), timeout=0.2)
        up = transfer_error(fusion, lambda agent: agent.upload(source, server.url("slow")), timeout=0.2)
    assert "timed out after 0.2 s" in str(down)
    assert "timed out after 0.2 s" in str(up)
    assert not target.exists()


def test_connection_refused_says_cannot_reach(fusion: Path, tmp_path: Path) -> None:
    source = tmp_path / "out"
    source.write_bytes(b"result")
    url = f"http://127.0.0.1:{free_port()}/x"
    down = transfer_error(fusion, lambda agent: agent.download(url, tmp_path / "x"))
    up = transfer_error(fusion, lambda agent: agent.upload(source, url))
    assert "cannot reach 127.0.0.1:" in str(down)
    assert "cannot reach 127.0.0.1:" in str(up)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("announce", [True, False])
def test_download_over_the_size_limit(announce: bool, served: Path, fusion: Path, tmp_path: Path) -> None:
    (served / "big").write_bytes(b"x" * 100)
    target = tmp_path / "big"
    with FixtureHTTPServer(served, ServerSwitches(announce_length=announce)) as server:
        error = transfer_error(fusion, lambda agent: agent.download(server.url("big"), target), max_bytes=10)
    assert "limit of 10 bytes" in str(error)
    assert not target.exists()


def test_upload_over_the_size_limit_sends_nothing(server: FixtureHTTPServer, tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.write_bytes(b"x" * 100)
    error = transfer_error(tmp_path / "fusion", lambda agent: agent.upload(source, server.url("big")), max_bytes=10)
    assert "has 100 bytes, more than the limit of 10 bytes" in str(error)
    assert server.requests == []


def test_download_to_an_existing_file_is_refused_before_any_request(
    server: FixtureHTTPServer, fusion: Path, tmp_path: Path
) -> None:
    target = tmp_path / "exists"
    target.write_bytes(b"keep me")
    error = transfer_error(fusion, lambda agent: agent.download(server.url("whatever"), target))
    assert "destination already exists" in str(error)
    assert target.read_bytes() == b"keep me"
    assert server.requests == []


def test_upload_of_a_missing_file(server: FixtureHTTPServer, tmp_path: Path) -> None:
    error = transfer_error(tmp_path / "fusion", lambda agent: agent.upload(tmp_path / "nope", server.url("x")))
    assert "source file does not exist" in str(error)


# --- file -----------------------------------------------------------------------------------------------------------


def test_file_urls_both_ways(fusion: Path, tmp_path: Path) -> None:
    source = tmp_path / "in dir" / "a b.txt"
    source.parent.mkdir()
    source.write_bytes(b"local data" * 1000)
    copied = tmp_path / "copied"
    uploaded = tmp_path / "up" / "result.txt"

    async def body(agent: FileAgent) -> None:
        assert await agent.download(f"file://{tmp_path}/in%20dir/a%20b.txt", copied) == 10_000
        await agent.upload(copied, f"file://{uploaded}")

    with_agent(fusion, body)
    assert copied.read_bytes() == uploaded.read_bytes() == source.read_bytes()


def test_file_url_errors(fusion: Path, tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.write_bytes(b"keep me")
    missing = transfer_error(fusion, lambda agent: agent.download(f"file://{tmp_path}/nope", tmp_path / "a"))
    exists = transfer_error(fusion, lambda agent: agent.upload(existing, f"file://{existing}"))
    hosted = transfer_error(fusion, lambda agent: agent.download("file://otherhost/etc/hosts", tmp_path / "b"))
    directory = transfer_error(fusion, lambda agent: agent.download(f"file://{tmp_path}", tmp_path / "c"))
    assert "source file does not exist" in str(missing)
    assert "destination already exists" in str(exists)
    assert "must not name a host" in str(hosted)
    assert "directory" in str(directory)
    assert existing.read_bytes() == b"keep me"
    assert not any((tmp_path / name).exists() for name in "abc")


def test_file_download_over_the_size_limit(fusion: Path, tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 100)
    error = transfer_error(
        fusion, lambda agent: agent.download(f"file://{tmp_path}/big", tmp_path / "copy"), max_bytes=99
    )
    assert "limit of 99 bytes" in str(error)
    assert not (tmp_path / "copy").exists()


# --- data -----------------------------------------------------------------------------------------------------------


def test_data_url_download(fusion: Path, tmp_path: Path) -> None:
    payload = base64.b64encode(b"Hello, Teaclave!").decode()
    target = tmp_path / "data"

    async def body(agent: FileAgent) -> None:
        assert await agent.download(f"data:text/plain;base64,{payload}", target) == 16

    with_agent(fusion, body)
    assert target.read_bytes() == b"Hello, Teaclave!"


@pytest.mark.parametrize(
    "url",
    [
        "data:text/plain,SGVsbG8=",
        "data:application/octet-stream;base64,SGVsbG8=",
        "data:text/plain;base64,SGVs,bG8=",
        "data:text/plain;base64,not*base64",
        "data:SGVsbG8=",
    ],
)
def test_malformed_data_urls(url: str, fusion: Path, tmp_path: Path) -> None:
    error = transfer_error(fusion, lambda agent: agent.download(url, tmp_path / "d"))
    assert "malformed data URL" in str(error)
    assert not (tmp_path / "d").exists()


def test_data_url_size_limit_and_no_upload(fusion: Path, tmp_path: Path) -> None:
    url = "data:text/plain;base64," + base64.b64encode(b"x" * 100).decode()
    (tmp_path / "src").write_bytes(b"x")
    big = transfer_error(fusion, lambda agent: agent.download(url, tmp_path / "d"), max_bytes=50)
    upload = transfer_error(fusion, lambda agent: agent.upload(tmp_path / "src", url))
    assert "limit of 50 bytes" in str(big)
    assert str(upload).startswith("Scheme not supported: data")
    assert "eHh4" not in str(big) + str(upload)  # the payload is file content: never shown


# --- fusion ---------------------------------------------------------------------------------------------------------


def test_fusion_both_ways(fusion: Path, tmp_path: Path) -> None:
    source = tmp_path / "result"
    source.write_bytes(b"fused")
    fetched = tmp_path / "fetched"

    async def body(agent: FileAgent) -> None:
        await agent.upload(source, "fusion:///TEACLAVE_FUSION_BASE/task-1/out.fusion")
        await agent.download("fusion:///TEACLAVE_FUSION_BASE/task-1/out.fusion", fetched)

    with_agent(fusion, body)
    assert (fusion / "task-1" / "out.fusion").read_bytes() == b"fused"
    assert fetched.read_bytes() == b"fused"


def test_fusion_existing_and_missing(fusion: Path, tmp_path: Path) -> None:
    (fusion / "there.fusion").write_bytes(b"old")
    source = tmp_path / "result"
    source.write_bytes(b"new")
    exists = transfer_error(fusion, lambda agent: agent.upload(source, "fusion:///TEACLAVE_FUSION_BASE/there.fusion"))
    missing = transfer_error(
        fusion, lambda agent: agent.download("fusion:///TEACLAVE_FUSION_BASE/gone.fusion", tmp_path / "x")
    )
    assert "destination already exists" in str(exists)
    assert "fusion file does not exist" in str(missing)
    assert (fusion / "there.fusion").read_bytes() == b"old"


HOSTILE_FUSION_URLS = [
    "fusion:///TEACLAVE_FUSION_BASE/../outside",
    "fusion:///TEACLAVE_FUSION_BASE/a/../../outside",
    "fusion:///TEACLAVE_FUSION_BASE/%2e%2e/outside",
    "fusion:///TEACLAVE_FUSION_BASE/%2E%2E%2Foutside",
    "fusion:///TEACLAVE_FUSION_BASE//tmp/outside",
    "fusion:///TEACLAVE_FUSION_BASE/%2Ftmp%2Foutside",
    "fusion:///TEACLAVE_FUSION_BASE/",
    "fusion:///TEACLAVE_FUSION_BASE/./x",
    "fusion:///OTHER_BASE/x",
    "fusion://host/TEACLAVE_FUSION_BASE/x",
]


@pytest.mark.parametrize("url", HOSTILE_FUSION_URLS)
def test_fusion_paths_outside_the_base_are_refused(url: str, fusion: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").write_bytes(b"secret")
    source = tmp_path / "result"
    source.write_bytes(b"payload")
    down = transfer_error(fusion, lambda agent: agent.download(url, tmp_path / "stolen"))
    up = transfer_error(fusion, lambda agent: agent.upload(source, url))
    assert "fusion" in str(down)
    assert "fusion" in str(up)
    assert not (tmp_path / "stolen").exists()
    assert (tmp_path / "outside").read_bytes() == b"secret"


def test_fusion_symlinks_leading_outside_are_refused(fusion: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"secret")
    (fusion / "link.fusion").symlink_to(outside / "file")
    (fusion / "dir").symlink_to(outside)
    source = tmp_path / "result"
    source.write_bytes(b"payload")
    read = transfer_error(
        fusion, lambda agent: agent.download("fusion:///TEACLAVE_FUSION_BASE/link.fusion", tmp_path / "x")
    )
    write = transfer_error(fusion, lambda agent: agent.upload(source, "fusion:///TEACLAVE_FUSION_BASE/dir/new/f"))
    assert "outside the fusion directory" in str(read)
    assert "outside the fusion directory" in str(write)
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["file"]


# --- other schemes, concurrency, secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://host/file", "s3://bucket/key", "mailto:someone@example.com"])
def test_unknown_schemes(url: str, fusion: Path, tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"x")
    scheme = url.split(":")[0]
    down = transfer_error(fusion, lambda agent: agent.download(url, tmp_path / "d"))
    up = transfer_error(fusion, lambda agent: agent.upload(tmp_path / "src", url))
    assert str(down).startswith(f"Scheme not supported: {scheme}")
    assert str(up).startswith(f"Scheme not supported: {scheme}")
    assert not (tmp_path / "d").exists()


def test_download_all_and_upload_all(server: FixtureHTTPServer, served: Path, fusion: Path, tmp_path: Path) -> None:
    for name in "abc":
        (served / f"{name}.txt").write_bytes(name.encode() * 10)
    work = tmp_path / "work"

    async def body(agent: FileAgent) -> None:
        await agent.download_all({name: (server.url(f"{name}.txt"), work / name / f"{name}.txt") for name in "abc"})
        await agent.upload_all({name: (work / name / f"{name}.txt", server.url(f"up/{name}")) for name in "abc"})

    with_agent(fusion, body)
    assert all((served / "up" / name).read_bytes() == name.encode() * 10 for name in "abc")


def test_download_all_cancels_the_rest_on_first_failure(served: Path, fusion: Path, tmp_path: Path) -> None:
    (served / "stalls.bin").write_bytes(b"s" * 100_000)
    (tmp_path / "local.txt").write_bytes(b"fine")
    switches = ServerSwitches(
        stall_after={"/stalls.bin": 1000}, wait_for_stall={"/fails.bin"}, status={"/fails.bin": 404}
    )
    work = tmp_path / "work"
    with FixtureHTTPServer(served, switches) as server:
        items = {
            "stalling": (server.url("stalls.bin"), work / "stalling" / "stalls.bin"),
            "failing": (server.url("fails.bin"), work / "failing" / "fails.bin"),
            "local": (f"file://{tmp_path}/local.txt", work / "local" / "local.txt"),
        }
        error = transfer_error(fusion, lambda agent: agent.download_all(items), timeout=10)
    assert str(error).startswith("failing: download of")
    assert "HTTP 404" in str(error)
    assert not (work / "stalling" / "stalls.bin").exists()
    assert not (work / "failing" / "fails.bin").exists()
    local = work / "local" / "local.txt"
    assert not local.exists() or local.read_bytes() == b"fine"


SECRET_QUERY = "?X-Amz-Credential=AKIDSECRET&X-Amz-Signature=secret#secret"


def test_messages_never_show_the_query_or_password(served: Path, fusion: Path, tmp_path: Path) -> None:
    source = tmp_path / "out"
    source.write_bytes(b"x")
    with FixtureHTTPServer(served, ServerSwitches(hang={"/slow"}, status={"/denied": 403})) as server:
        base = f"http://user:secret@127.0.0.1:{server.port}"
        errors = [
            transfer_error(fusion, lambda agent: agent.download(f"{base}/missing{SECRET_QUERY}", tmp_path / "a")),
            transfer_error(fusion, lambda agent: agent.upload(source, f"{base}/denied{SECRET_QUERY}")),
            transfer_error(
                fusion, lambda agent: agent.download(f"{base}/slow{SECRET_QUERY}", tmp_path / "b"), timeout=0.2
            ),
        ]
        assert server.requests[0].path.endswith("X-Amz-Signature=secret")  # the query did reach the server
    refused = f"https://user:secret@127.0.0.1:{free_port()}/x{SECRET_QUERY}"
    errors.append(transfer_error(fusion, lambda agent: agent.download(refused, tmp_path / "c")))
    errors.append(transfer_error(fusion, lambda agent: agent.download(f"gopher://h/x{SECRET_QUERY}", tmp_path / "d")))
    for error in errors:
        shown = "".join(traceback.format_exception(error)) + repr(error)
        assert "secret" not in shown.lower()
        assert "AKIDSECRET" not in shown


def test_limits_from_settings() -> None:
    limits = TransferLimits.from_settings(ExecutionSettings(max_file_bytes=123, transfer_timeout_seconds=4.5))
    assert limits == TransferLimits(max_bytes=123, timeout_seconds=4.5)
    with pytest.raises(ValueError, match="positive"):
        TransferLimits(max_bytes=1, timeout_seconds=0)


def test_cancelling_download_all_removes_partial_files(served: Path, fusion: Path, tmp_path: Path) -> None:
    (served / "stalls.bin").write_bytes(b"s" * 100_000)
    target = tmp_path / "work" / "stalls.bin"
    with FixtureHTTPServer(served, ServerSwitches(stall_after={"/stalls.bin": 1000})) as server:

        async def body(agent: FileAgent) -> None:
            transfer = asyncio.ensure_future(agent.download_all({"a": (server.url("stalls.bin"), target)}))
            assert await asyncio.to_thread(server.stalled.wait, 5)
            assert target.exists()
            transfer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await transfer

        with_agent(fusion, body, timeout=10)
    assert not target.exists()


def test_empty_batches_and_upload_all_failure(server: FixtureHTTPServer, fusion: Path, tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"ok")

    async def body(agent: FileAgent) -> None:
        await agent.download_all({})
        await agent.upload_all({})
        with pytest.raises(TransferError, match=r"^missing: upload to .* source file does not exist"):
            await agent.upload_all(
                {"ok": (tmp_path / "ok", server.url("ok")), "missing": (tmp_path / "nope", server.url("nope"))}
            )

    with_agent(fusion, body)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http:///no-host", "names no host"), ("http://127.0.0.1:99999/x", "port"), ("nonsense", "no scheme")],
)
def test_malformed_urls(url: str, expected: str, fusion: Path, tmp_path: Path) -> None:
    error = transfer_error(fusion, lambda agent: agent.download(url, tmp_path / "x"))
    assert expected in str(error)
    assert not (tmp_path / "x").exists()


def test_file_urls_are_confined_to_configured_roots(fusion: Path, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"platform key")
    (allowed / "link").symlink_to(secret)
    outside = []

    async def body(agent: FileAgent) -> None:
        for url in (f"file://{secret}", f"file://{allowed}/link", f"file://{allowed}/../secret.key"):
            with pytest.raises(TransferError) as info:
                await agent.download(url, tmp_path / "copy")
            outside.append(str(info.value))
        with pytest.raises(TransferError, match="outside"):
            await agent.upload(secret, f"file://{tmp_path}/elsewhere")

    with_agent(fusion, body, file_roots=(allowed,))
    assert all("outside the directories" in message for message in outside)
    assert not (tmp_path / "copy").exists() and not (tmp_path / "elsewhere").exists()

    async def disabled() -> None:
        async with FileAgent(fusion, TransferLimits(max_bytes=10, timeout_seconds=1)) as agent:
            with pytest.raises(TransferError, match="file URLs are disabled"):
                await agent.download(f"file://{secret}", tmp_path / "copy")

    run(disabled)
