"""Encrypted data end to end: files by URL, integrity-checked inputs, outputs encrypted for their owners."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Session, admin, login
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from http_fixture_server import FixtureHTTPServer, ServerSwitches
from s3_server import BUCKET, S3, running_s3
from shared_fixtures import FIXTURE_CMACS, TEACLAVE_FIXTURES, fixture_cmac

from cloister.crypto.files import decrypt_file
from cloister.errors import AccessDeniedError, FailedOperationError, TaskFailedError
from cloister.model.files import FileCrypto
from cloister.sdk import DataMap, FunctionArgument, FunctionInput, FunctionOutput, OwnerList
from cloister.testing import RunningPlatform

FUNCTIONS = TEACLAVE_FIXTURES / "functions"
BANKS = FUNCTIONS / "private_join_and_compute" / "three_party_data"
BANK_CMACS = {c: FIXTURE_CMACS[f"private_join_and_compute/three_party_data/bank_{c}.enc"] for c in "abc"}
ZERO_KEY = bytes(16)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FixtureHTTPServer, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    switches = ServerSwitches()
    with FixtureHTTPServer(root, switches) as server:
        yield server, root


def _users(platform: RunningPlatform, prefix: str, names: str) -> dict[str, Session]:
    root = admin(platform)
    sessions = {}
    for name in names:
        user = f"{prefix}_{name}"
        root.auth.user_register(user, f"{user}-password", "DataOwner", user)
        sessions[name] = login(platform, user, f"{user}-password")
    return sessions


def _join_function(platform: RunningPlatform, parties: int) -> str:
    return admin(platform).frontend.register_function(
        "builtin-private-join-and-compute",
        "identities every party has, with their total",
        "builtin",
        arguments=[FunctionArgument("num_user")],
        inputs=[FunctionInput(f"input_data{i}") for i in range(parties)],
        outputs=[FunctionOutput(f"output_data{i}") for i in range(parties)],
    )


def _aes_gcm_data_url(plaintext: bytes, key: bytes, iv: bytes) -> tuple[str, bytes]:
    sealed = AESGCM(key).encrypt(iv, plaintext, bytes(8))
    return "data:text/plain;base64," + base64.b64encode(sealed).decode(), sealed[-16:]


def _decrypt(crypto: FileCrypto, encrypted: Path, tmp_path: Path) -> bytes:
    plaintext = tmp_path / f"{encrypted.name}.plain"
    decrypt_file(crypto, encrypted, plaintext)
    return plaintext.read_bytes()


def _three_bank_join(
    platform: RunningPlatform, prefix: str, input_url, output_url
) -> dict[str, tuple[str, bytes, str]]:
    """Three banks join their customer lists; returns each bank's (output id, key, task id)."""
    banks = _users(platform, prefix, "abc")
    function_id = _join_function(platform, 3)
    ids = {c: f"{prefix}_{c}" for c in "abc"}
    task_id = banks["a"].frontend.create_task(
        function_id,
        {"num_user": 3},
        "builtin",
        inputs_ownership=[OwnerList(f"input_data{i}", [ids[c]]) for i, c in enumerate("abc")],
        outputs_ownership=[OwnerList(f"output_data{i}", [ids[c]]) for i, c in enumerate("abc")],
    )
    outputs = {}
    for i, c in enumerate("abc"):
        bank = banks[c].frontend
        input_id = bank.register_input_file(
            input_url(c), "teaclave-file-128", ZERO_KEY, b"", bytes.fromhex(BANK_CMACS[c])
        )
        key = os.urandom(16)
        output_id = bank.register_output_file(output_url(c), "teaclave-file-128", key, b"")
        bank.assign_data_to_task(
            task_id, [DataMap(f"input_data{i}", input_id)], [DataMap(f"output_data{i}", output_id)]
        )
        outputs[c] = (output_id, key, task_id)
    for c in "abc":
        banks[c].frontend.approve_task(task_id)
    banks["a"].frontend.invoke_task(task_id)
    assert banks["a"].frontend.get_task_result(task_id) == b"3 users join the task in total."
    task = banks["a"].frontend.wait_task(task_id)
    for i, c in enumerate("abc"):
        output_id, _, _ = outputs[c]
        record = banks[c].frontend.get_output_file(output_id)
        assert base64.b64decode(record["cmac"]) == task.result.Ok.tags_map[f"output_data{i}"]
        other = "b" if c == "a" else "a"
        with pytest.raises(AccessDeniedError):
            banks[other].frontend.get_output_file(output_id)
    return outputs


def _assert_join_output(plaintext: bytes) -> None:
    assert sorted(plaintext.decode().splitlines()) == ["c, 470000", "e, 5033000"]


def test_three_banks_join_over_http(platform: RunningPlatform, served, tmp_path: Path) -> None:
    server, root = served
    (root / "inputs").mkdir()
    for c in "abc":
        shutil.copy(BANKS / f"bank_{c}.enc", root / "inputs")
    outputs = _three_bank_join(
        platform,
        "http",
        lambda c: server.url(f"inputs/bank_{c}.enc"),
        lambda c: server.url(f"outputs/{c}/result_{c}.enc"),
    )
    for c, (_, key, _) in outputs.items():
        _assert_join_output(
            _decrypt(FileCrypto("teaclave-file-128", key), root / "outputs" / c / f"result_{c}.enc", tmp_path)
        )
    puts = [r for r in server.requests if r.method == "PUT"]
    assert len(puts) == 3 and all("content-length" in {k.lower() for k in r.headers} for r in puts)


def test_three_banks_join_through_s3_presigned_urls(platform: RunningPlatform, tmp_path: Path) -> None:
    with running_s3(tmp_path / "moto.log") as s3:
        for c in "abc":
            s3.client.put_object(Bucket=BUCKET, Key=f"inputs/bank_{c}.enc", Body=(BANKS / f"bank_{c}.enc").read_bytes())
        outputs = _three_bank_join(
            platform,
            "s3",
            lambda c: s3.presign("get_object", f"inputs/bank_{c}.enc"),
            lambda c: s3.presign("put_object", f"outputs/result_{c}.enc"),
        )
        for c, (_, key, _) in outputs.items():
            downloaded = tmp_path / f"result_{c}.enc"
            downloaded.write_bytes(_get(s3, f"outputs/result_{c}.enc"))
            _assert_join_output(_decrypt(FileCrypto("teaclave-file-128", key), downloaded, tmp_path))


def _get(s3: S3, key: str) -> bytes:
    return s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_ordered_set_intersection_between_two_users(platform: RunningPlatform, served, tmp_path: Path) -> None:
    server, root = served
    directory = FUNCTIONS / "ordered_set_intersect"
    for name in ("psi0.txt.enc", "psi1.txt.enc"):
        shutil.copy(directory / name, root / name)
    users = _users(platform, "psi", "01")
    function_id = admin(platform).frontend.register_function(
        "builtin-ordered-set-intersect",
        "which of my sorted hashes you have too",
        "builtin",
        arguments=[FunctionArgument("order")],
        inputs=[FunctionInput("input_data1"), FunctionInput("input_data2")],
        outputs=[FunctionOutput("output_result1"), FunctionOutput("output_result2")],
    )
    task_id = users["0"].frontend.create_task(
        function_id,
        {"order": "ascending"},
        "builtin",
        inputs_ownership=[OwnerList("input_data1", ["psi_0"]), OwnerList("input_data2", ["psi_1"])],
        outputs_ownership=[OwnerList("output_result1", ["psi_0"]), OwnerList("output_result2", ["psi_1"])],
    )
    cmacs = {n: FIXTURE_CMACS[f"ordered_set_intersect/psi{n}.txt.enc"] for n in "01"}
    keys = {}
    for n in "01":
        user = users[n].frontend
        i = int(n) + 1
        input_id = user.register_input_file(
            server.url(f"psi{n}.txt.enc"), "teaclave-file-128", ZERO_KEY, b"", bytes.fromhex(cmacs[n])
        )
        keys[n] = (os.urandom(16), os.urandom(12))
        output_id = user.register_output_file(server.url(f"out/result{n}"), "aes-gcm-128", *keys[n])
        user.assign_data_to_task(
            task_id, [DataMap(f"input_data{i}", input_id)], [DataMap(f"output_result{i}", output_id)]
        )
    for n in "01":
        users[n].frontend.approve_task(task_id)
    users["0"].frontend.invoke_task(task_id)
    assert users["0"].frontend.get_task_result(task_id) == b"3 common items"
    expected = {"0": b"0101010", "1": b"01101"}
    for n in "01":
        crypto = FileCrypto("aes-gcm-128", *keys[n])
        assert _decrypt(crypto, root / "out" / f"result{n}", tmp_path) == expected[n]


def _password_check(platform: RunningPlatform, user: Session, exposed_url: str, exposed_cmac: bytes) -> str:
    function_id = admin(platform).frontend.register_function(
        "builtin-password-check",
        "is my password exposed?",
        "builtin",
        inputs=[FunctionInput("password"), FunctionInput("exposed_passwords")],
    )
    password_url = "data:text/plain;base64,c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9"  # "password", AES-GCM-128, key and IV zero
    task_id = user.frontend.create_task(
        function_id,
        {},
        "builtin",
        inputs_ownership=[OwnerList("password", [user.user]), OwnerList("exposed_passwords", [user.user])],
    )
    password = user.frontend.register_input_file(
        password_url, "aes-gcm-128", ZERO_KEY, bytes(12), bytes.fromhex("e84748f7ad380e183062b9b4b3942b7d")
    )
    exposed = user.frontend.register_input_file(exposed_url, "teaclave-file-128", ZERO_KEY, b"", exposed_cmac)
    user.frontend.assign_data_to_task(
        task_id, [DataMap("password", password), DataMap("exposed_passwords", exposed)], []
    )
    user.frontend.invoke_task(task_id)
    return task_id


EXPOSED_CMAC = fixture_cmac("password_check/exposed_passwords.txt.enc")


def test_password_check_with_a_data_url(platform: RunningPlatform, served) -> None:
    server, root = served
    shutil.copy(FUNCTIONS / "password_check" / "exposed_passwords.txt.enc", root)
    (user,) = _users(platform, "pw", "x").values()
    task_id = _password_check(platform, user, server.url("exposed_passwords.txt.enc"), EXPOSED_CMAC)
    assert user.frontend.get_task_result(task_id) == b"true"


def test_fusion_output_feeds_a_second_task(platform: RunningPlatform, served) -> None:
    server, root = served
    for c in "ab":
        shutil.copy(BANKS / f"bank_{c}.enc", root)
    banks = _users(platform, "fusion", "ab")
    ids = ["fusion_a", "fusion_b"]
    join = _join_function(platform, 2)
    task_id = banks["a"].frontend.create_task(
        join,
        {"num_user": 2},
        "builtin",
        inputs_ownership=[OwnerList("input_data0", ["fusion_a"]), OwnerList("input_data1", ["fusion_b"])],
        outputs_ownership=[OwnerList("output_data0", ids), OwnerList("output_data1", ids)],
    )
    fused = [banks["a"].frontend.register_fusion_output(ids) for _ in range(2)]
    banks["a"].frontend.assign_data_to_task(task_id, [], [DataMap(f"output_data{i}", f) for i, f in enumerate(fused)])
    for i, c in enumerate("ab"):
        bank = banks[c].frontend
        input_id = bank.register_input_file(
            server.url(f"bank_{c}.enc"), "teaclave-file-128", ZERO_KEY, b"", bytes.fromhex(BANK_CMACS[c])
        )
        bank.assign_data_to_task(task_id, [DataMap(f"input_data{i}", input_id)], [])
    for c in "ab":
        banks[c].frontend.approve_task(task_id)
    banks["a"].frontend.invoke_task(task_id)
    assert banks["a"].frontend.get_task_result(task_id) == b"2 users join the task in total."
    assert len(base64.b64decode(banks["b"].frontend.get_output_file(fused[0])["cmac"])) == 16

    # Both banks own the joined result; the second task checks whether its first line is a known one.
    joined = banks["a"].frontend.register_input_from_output(fused[0])
    first_line = b"a, 5000100\n"  # bank a has "a : 100", bank b "a : 5000000"; "a" sorts first
    key, iv = os.urandom(16), os.urandom(12)
    url, cmac = _aes_gcm_data_url(first_line, key, iv)
    known = banks["a"].frontend.register_input_file(url, "aes-gcm-128", key, iv, cmac)
    check = admin(platform).frontend.register_function(
        "builtin-password-check", "is it known?", "builtin",
        inputs=[FunctionInput("password"), FunctionInput("exposed_passwords")],
    )  # fmt: skip
    second = banks["a"].frontend.create_task(
        check,
        {},
        "builtin",
        inputs_ownership=[OwnerList("password", ids), OwnerList("exposed_passwords", ["fusion_a"])],
    )
    banks["a"].frontend.assign_data_to_task(
        second, [DataMap("password", joined), DataMap("exposed_passwords", known)], []
    )
    banks["a"].frontend.approve_task(second)
    with pytest.raises(FailedOperationError, match="failed to invoke task"):
        banks["a"].frontend.invoke_task(second)
    banks["b"].frontend.approve_task(second)
    banks["a"].frontend.invoke_task(second)
    assert banks["a"].frontend.get_task_result(second) == b"true"


def _failure(user: Session, task_id: str) -> str:
    with pytest.raises(TaskFailedError) as caught:
        user.frontend.get_task_result(task_id)
    return caught.value.reason


def test_bad_files_fail_the_task_saying_which_and_why(platform: RunningPlatform, served) -> None:
    server, root = served
    original = (FUNCTIONS / "password_check" / "exposed_passwords.txt.enc").read_bytes()
    (root / "good").mkdir()
    (root / "good" / "exposed_passwords.txt.enc").write_bytes(original)
    tampered = bytearray(original)
    tampered[200] ^= 0x01
    (root / "tampered").mkdir()
    (root / "tampered" / "exposed_passwords.txt.enc").write_bytes(bytes(tampered))
    (user,) = _users(platform, "bad", "x").values()

    reason = _failure(
        user, _password_check(platform, user, server.url("tampered/exposed_passwords.txt.enc"), EXPOSED_CMAC)
    )
    assert reason.startswith("input exposed_passwords:") and "verify" in reason
    reason = _failure(user, _password_check(platform, user, server.url("good/exposed_passwords.txt.enc"), bytes(16)))
    assert reason.startswith("input exposed_passwords:") and "cmac" in reason.lower()
    reason = _failure(
        user, _password_check(platform, user, "http://127.0.0.1:1/exposed_passwords.txt.enc", EXPOSED_CMAC)
    )
    assert reason.startswith("input exposed_passwords:") and "cannot reach" in reason

    server.switches.status["/refused/result"] = 403
    function_id = admin(platform).frontend.register_function(
        "builtin-echo", "echo with an output", "builtin", arguments=[FunctionArgument("message")],
        outputs=[FunctionOutput("unused")],
    )  # fmt: skip
    task_id = user.frontend.create_task(
        function_id, {"message": "x"}, "builtin", outputs_ownership=[OwnerList("unused", [user.user])]
    )
    output = user.frontend.register_output_file(
        server.url("refused/result"), "aes-gcm-128", os.urandom(16), os.urandom(12)
    )
    user.frontend.assign_data_to_task(task_id, [], [DataMap("unused", output)])
    user.frontend.invoke_task(task_id)
    assert _failure(user, task_id) == "output unused was not written by the function"


def test_refused_upload_fails_the_task_naming_the_output(platform: RunningPlatform, served) -> None:
    server, root = served
    for c in "ab":
        shutil.copy(BANKS / f"bank_{c}.enc", root)
    (user,) = _users(platform, "upload", "x").values()
    me = [user.user]
    task_id = user.frontend.create_task(
        _join_function(platform, 2),
        {"num_user": 2},
        "builtin",
        inputs_ownership=[OwnerList("input_data0", me), OwnerList("input_data1", me)],
        outputs_ownership=[OwnerList("output_data0", me), OwnerList("output_data1", me)],
    )
    inputs = [
        DataMap(
            f"input_data{i}",
            user.frontend.register_input_file(
                server.url(f"bank_{c}.enc"), "teaclave-file-128", ZERO_KEY, b"", bytes.fromhex(BANK_CMACS[c])
            ),
        )
        for i, c in enumerate("ab")
    ]
    server.switches.status["/refused/out1"] = 403
    outputs = [
        DataMap(
            f"output_data{i}",
            user.frontend.register_output_file(server.url(path), "teaclave-file-128", os.urandom(16), b""),
        )
        for i, path in enumerate(("accepted/out0", "refused/out1"))
    ]
    user.frontend.assign_data_to_task(task_id, inputs, outputs)
    user.frontend.invoke_task(task_id)
    reason = _failure(user, task_id)
    assert reason.startswith("output output_data1: upload to http://127.0.0.1:")
    assert "403" in reason
