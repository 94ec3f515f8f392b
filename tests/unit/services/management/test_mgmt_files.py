"""Input and output files: registration checks, updates, fusion outputs, reads (§7.1, §7.2)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from policy_authorizer import caller

from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import AccessDeniedError, InvalidArgumentError, InvalidDataIdError, MalformedRequestError
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
    assert _input(crypto_info=CRYPTO).owner == {"alice"}
    with pytest.raises(MalformedRequestError, match="invalid url"):
        _input(url="not a url", crypto_info=CRYPTO)
    with pytest.raises(MalformedRequestError, match="invalid url"):
        _input(url="", crypto_info=CRYPTO)
    with pytest.raises(MalformedRequestError, match="Invalid length"):
        _input(cmac=bytes(15), crypto_info=CRYPTO)
    with pytest.raises(MalformedRequestError) as missing:
        _input()
    assert missing.value.message == '"missing crypto_info"'
    bad = [
        (
            _crypto("aes-gcm-128", key=bytes(15), iv=bytes(12)),
            "Invalid key length for AesGcm128: 15",
        ),
        (
            _crypto("aes-gcm-256", key=bytes(32), iv=bytes(11)),
            "Invalid iv length for AesGcm256: 11",
        ),
        (_crypto("teaclave-file-128", key=bytes(16), iv=b"x"), "IV is not empty"),
        (_crypto("teaclave-file-128", key=bytes(8)), "teaclave_file_128: 8"),
        (_crypto("rot13"), "Invalid crypto schema: rot13"),
    ]
    for info, message in bad:
        with pytest.raises(MalformedRequestError, match=message):
            _input(crypto_info=info)


def test_register_output_needs_url_and_crypto():
    request = fe_pb.RegisterOutputFileRequest(url="s3://bucket/key", crypto_info=CRYPTO)
    file = output_file_from_register_request(request, "bob", uuid.uuid4())
    assert file.cmac is None and file.owner == {"bob"}
    assert output_file_to_get_response(file).cmac == b""
    with pytest.raises(MalformedRequestError, match="missing crypto_info"):
        output_file_from_register_request(fe_pb.RegisterOutputFileRequest(url="s3://b/k"), "bob", uuid.uuid4())


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
        with pytest.raises(MalformedRequestError):
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
