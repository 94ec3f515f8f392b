"""Input and output files: registration checks, updates, fusion outputs, reads (§7.1, §7.2)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from policy_authorizer import caller

from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import AccessDeniedError, InvalidArgumentError, InvalidDataIdError
from cloister.rpc.convert.files import (
    input_file_from_register_request,
    output_file_from_register_request,
    output_file_to_get_response,
)
from cloister.storage.ops import Put

CRYPTO = common_pb.FileCryptoInfo(schema="aes-gcm-128", key=bytes(16), iv=bytes(12))


def _crypto(schema: str, key: bytes = b"", iv: bytes = b"") -> common_pb.FileCryptoInfo:
    return common_pb.FileCryptoInfo(schema=schema, key=key, iv=iv)


def _input(**fields):
    fields.setdefault("url", "https://example.com/a")
    fields.setdefault("cmac", bytes(16))
    return input_file_from_register_request(fe_pb.RegisterInputFileRequest(**fields), "alice", uuid.uuid4())


def test_register_input_request_errors():
    """Each refusal is INVALID_ARGUMENT and names the field (unit tests of the checks: tests/unit/model,
    tests/unit/file_agent/test_url_checks.py)."""
    assert _input(crypto_info=CRYPTO).owner == {"alice"}
    with pytest.raises(InvalidArgumentError, match=r"^url 'not a url' is relative; give an absolute URL"):
        _input(url="not a url", crypto_info=CRYPTO)
    with pytest.raises(InvalidArgumentError, match=r"^url is empty"):
        _input(url="", crypto_info=CRYPTO)
    with pytest.raises(InvalidArgumentError, match=r"^cmac must be 16 bytes, got 15$"):
        _input(cmac=bytes(15), crypto_info=CRYPTO)
    with pytest.raises(InvalidArgumentError) as missing:
        _input()
    assert missing.value.message == (
        "crypto_info is missing; give one with a schema, one of: aes-gcm-128, aes-gcm-256, teaclave-file-128, raw"
    )
    bad = [
        (
            _crypto("aes-gcm-128", key=bytes(15), iv=bytes(12)),
            "crypto_info.key must be 16 bytes for aes-gcm-128, got 15",
        ),
        (
            _crypto("aes-gcm-256", key=bytes(32), iv=bytes(11)),
            "crypto_info.iv must be 12 bytes for aes-gcm-256, got 11",
        ),
        (_crypto("teaclave-file-128", key=bytes(16), iv=b"x"), "crypto_info.iv must be empty for teaclave-file-128"),
        (_crypto("teaclave-file-128", key=bytes(8)), "crypto_info.key must be 16 bytes for teaclave-file-128, got 8"),
        (
            _crypto("rot13"),
            "crypto_info.schema 'rot13' is not one of: aes-gcm-128, aes-gcm-256, teaclave-file-128, raw",
        ),
    ]
    for info, message in bad:
        with pytest.raises(InvalidArgumentError) as refused:
            _input(crypto_info=info)
        assert refused.value.message.startswith(message)


def test_register_output_needs_a_writable_url_and_crypto():
    request = fe_pb.RegisterOutputFileRequest(url="https://bucket.example/key?X-Amz-Signature=abc", crypto_info=CRYPTO)
    file = output_file_from_register_request(request, "bob", uuid.uuid4())
    assert file.cmac is None and file.owner == {"bob"}
    assert output_file_to_get_response(file).cmac == b""
    with pytest.raises(InvalidArgumentError, match="crypto_info is missing"):
        output_file_from_register_request(fe_pb.RegisterOutputFileRequest(url="https://b/k"), "bob", uuid.uuid4())
    for url, message in (
        ("s3://bucket/key", "url scheme 's3' is not one of: http, https, fusion, file; an S3 object is reached by a"),
        ("data:text/plain;base64,YQ==", "url scheme 'data' is not one of: http, https, fusion, file; a data URL can"),
    ):
        with pytest.raises(InvalidArgumentError) as refused:
            output_file_from_register_request(
                fe_pb.RegisterOutputFileRequest(url=url, crypto_info=CRYPTO), "bob", uuid.uuid4()
            )
        assert refused.value.message.startswith(message)


def test_update_input_creates_new_record(services, act, storage):
    async def go():
        old = await act.register_input("alice", url="https://a.example/1")
        new = await services.files.update_input(caller("alice"), old, "https://a.example/2")
        assert new != old and new.startswith("input-")
        assert storage.json(old)["url"] == "https://a.example/1"
        assert storage.json(new)["url"] == "https://a.example/2"
        assert storage.json(new)["cmac"] == storage.json(old)["cmac"]
        with pytest.raises(AccessDeniedError):
            await services.files.update_input(caller("bob"), old, "https://a.example/3")
        for bad in ("input-xyz", "", "nonsense", old.replace("input", "output")):
            with pytest.raises(InvalidDataIdError):
                await services.files.update_input(caller("alice"), bad, "https://a.example/3")
        with pytest.raises(InvalidArgumentError, match="url 'relative/path' is relative"):
            await services.files.update_input(caller("alice"), old, "relative/path")

    asyncio.run(go())


def test_update_output_resets_cmac_and_needs_sole_owner(services, act, storage):
    async def go():
        old = await act.register_output("alice")
        new = await services.files.update_output(caller("alice"), old, "https://b.example/x")
        assert new != old and storage.json(new)["cmac"] is None
        fusion = await services.files.register_fusion_output(caller("alice"), ["alice", "bob"])
        with pytest.raises(AccessDeniedError):  # owners must be exactly the caller
            await services.files.update_output(caller("alice"), fusion, "https://b.example/y")
        with pytest.raises(InvalidArgumentError, match="url scheme 'data' is not one of: http, https, fusion, file"):
            await services.files.update_output(caller("alice"), old, "data:text/plain;base64,YQ==")

    asyncio.run(go())


def test_fusion_output_rules(services, storage):
    async def go():
        data_id = await services.files.register_fusion_output(caller("alice"), ["alice", "bob", "bob"])
        record = storage.json(data_id)
        assert record["url"].startswith("fusion:///TEACLAVE_FUSION_BASE/") and record["url"].endswith(".fusion")
        assert record["url"] != f"fusion:///TEACLAVE_FUSION_BASE/{record['uuid']}.fusion"
        assert sorted(record["owner"]["uids"]) == ["alice", "bob"]
        assert len(record["crypto_info"]["TeaclaveFile128"]["key"]) == 16
        assert record["cmac"] is None
        # a duplicated caller still counts as two entries
        await services.files.register_fusion_output(caller("alice"), ["alice", "alice"])
        for owners in (["alice"], ["bob", "carol"], []):
            with pytest.raises(AccessDeniedError):
                await services.files.register_fusion_output(caller("alice"), owners)

    asyncio.run(go())


def test_register_input_from_output_needs_cmac(services, storage):
    async def go():
        out = await services.files.register_fusion_output(caller("alice"), ["alice", "bob"])
        with pytest.raises(InvalidArgumentError, match="invalid output file"):
            await services.files.register_input_from_output(caller("alice"), out)
        record = storage.json(out)
        record["cmac"] = {"tag": list(range(16))}
        await storage.commit([Put(out.encode(), json.dumps(record).encode())])
        with pytest.raises(AccessDeniedError):
            await services.files.register_input_from_output(caller("carol"), out)
        new = await services.files.register_input_from_output(caller("bob"), out)
        assert new == out.replace("output-", "input-")
        file = await services.files.get_input(caller("alice"), new)
        assert file.cmac == bytes(range(16)) and file.owner == {"alice", "bob"}
        with pytest.raises(InvalidDataIdError):
            await services.files.register_input_from_output(caller("bob"), new)

    asyncio.run(go())


def test_get_files_for_owners_only(services, act):
    async def go():
        in_id = await act.register_input("alice")
        out_id = await act.register_output("alice")
        assert (await services.files.get_input(caller("alice"), in_id)).owner == {"alice"}
        assert (await services.files.get_output(caller("alice"), out_id)).cmac is None
        with pytest.raises(AccessDeniedError):
            await services.files.get_input(caller("bob"), in_id)
        with pytest.raises(AccessDeniedError):
            await services.files.get_output(caller("bob"), out_id)
        with pytest.raises(InvalidDataIdError):
            await services.files.get_output(caller("alice"), in_id)

    asyncio.run(go())
