"""The Pythonic client against a real platform: two parties with encrypted files, waiting that
never hangs, timeouts, cancellation, and the local administrator's connection."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_fixture_server import FixtureHTTPServer
from shared_fixtures import FIXTURE_CMACS, TEACLAVE_FIXTURES

from cloister import (
    Client,
    Credentials,
    Crypto,
    TaskCancelledError,
    TaskFailedError,
    TaskNotReadyError,
    TaskStatus,
    Trust,
)
from cloister.crypto.files import decrypt_file
from cloister.errors import AccessDeniedError, AuthenticationError, InvalidArgumentError, UserExistsError
from cloister.testing import RunningPlatform

BANKS = TEACLAVE_FIXTURES / "functions" / "private_join_and_compute" / "three_party_data"
SLEEPER = b"import time\ndef entrypoint(argv):\n    time.sleep(120)\n    return 'late'\n"
FAILING = b"def entrypoint(argv):\n    return {}['missing']\n"


def _connect(platform: RunningPlatform, user: str, password: str) -> Client:
    return Client.connect(
        platform.frontend_address,
        trust=Trust.from_files(platform.as_root_ca, platform.enclave_info),
        credentials=Credentials(user, password),
        authentication=platform.authentication_address,
    )


@pytest.fixture(scope="module")
def root(platform: RunningPlatform) -> Iterator[Client]:
    with _connect(platform, platform.admin_user, platform.admin_password) as client:
        yield client


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FixtureHTTPServer, Path]]:
    directory = tmp_path / "served"
    directory.mkdir()
    with FixtureHTTPServer(directory) as server:
        yield server, directory


def _user(platform: RunningPlatform, root: Client, name: str, role: str = "DataOwner") -> Client:
    root.users.register(name, f"{name}-password", role, name if role == "DataOwner" else "")
    return _connect(platform, name, f"{name}-password")


def test_two_banks_join_encrypted_lists(
    platform: RunningPlatform, root: Client, served: tuple[FixtureHTTPServer, Path], tmp_path: Path
) -> None:
    server, directory = served
    banks = {c: _user(platform, root, f"client_bank_{c}") for c in "ab"}
    function = root.functions.register(
        "builtin-private-join-and-compute",
        executor="builtin",
        description="identities both banks have, with their total",
        arguments=["num_user"],
        inputs=["input_data0", "input_data1"],
        outputs=["output_data0", "output_data1"],
    )
    owners = {c: banks[c].user_id for c in "ab"}
    task = banks["a"].tasks.create(
        function,
        {"num_user": 2},
        inputs_ownership={f"input_data{i}": owners[c] for i, c in enumerate("ab")},
        outputs_ownership={f"output_data{i}": owners[c] for i, c in enumerate("ab")},
    )
    assert task.describe().participants == frozenset(owners.values())

    # Not invoked yet: asking for the result says at once what is missing instead of hanging.
    with pytest.raises(TaskNotReadyError, match="client_bank_a, client_bank_b") as missing:
        task.result()
    assert "input data input_data0, input_data1" in str(missing.value)

    keys = {}
    for i, c in enumerate("ab"):
        shutil.copy(BANKS / f"bank_{c}.enc", directory / f"bank_{c}.enc")
        cmac = bytes.fromhex(FIXTURE_CMACS[f"private_join_and_compute/three_party_data/bank_{c}.enc"])
        bank_input = banks[c].files.register_input(
            server.url(f"bank_{c}.enc"), Crypto.teaclave_file_128(bytes(16)), cmac
        )
        keys[c] = Crypto.aes_gcm_128(os.urandom(16))
        bank_output = banks[c].files.register_output(server.url(f"out/result_{c}.enc"), keys[c])
        handle = banks[c].tasks.get(task.id)
        handle.assign(inputs={f"input_data{i}": bank_input}, outputs={f"output_data{i}": bank_output})
    with pytest.raises(TaskNotReadyError, match="approval by client_bank_a, client_bank_b"):
        task.result(timeout=30)
    for c in "ab":
        assert [t.id for t in banks[c].tasks.list(awaiting_my_approval=True)] == [task.id]  # each one's inbox
        banks[c].tasks.get(task.id).approve()
        assert banks[c].tasks.list(awaiting_my_approval=True) == []
    assert [t.id for t in banks["b"].tasks.list(status=TaskStatus.APPROVED)] == [task.id]
    assert banks["b"].tasks.list(status=TaskStatus.FINISHED) == []
    with pytest.raises(AccessDeniedError):
        banks["b"].tasks.get(task.id).invoke()  # only the creator invokes
    task.invoke()

    result = task.result(timeout=120)
    assert result.return_value == b"2 users join the task in total."
    assert set(result.output_tags) == {"output_data0", "output_data1"}
    assert banks["b"].tasks.get(task.id).result() == result  # every participant reads the same result
    assert task.status() is TaskStatus.FINISHED
    for i, c in enumerate("ab"):
        described = banks[c].tasks.get(task.id).describe()
        output_file = banks[c].files.register_input_from_output(described.assigned_outputs[f"output_data{i}"])
        assert output_file.get().cmac == result.output_tags[f"output_data{i}"]
        plaintext = tmp_path / f"result_{c}.txt"
        decrypt_file(keys[c], directory / "out" / f"result_{c}.enc", plaintext)
        assert plaintext.read_bytes().strip()  # each bank decrypts its own output with its own key


def test_a_task_that_runs_too_long_times_out_and_is_cancelled(platform: RunningPlatform, root: Client) -> None:
    sleeper = root.functions.register("sleeper", executor="python", payload=SLEEPER)
    task = root.tasks.create(sleeper)
    task.invoke()
    with pytest.raises(TimeoutError, match=task.id):
        task.result(timeout=1.0)
    task.cancel()
    with pytest.raises(TaskCancelledError):
        task.result(timeout=60)
    assert task.status() is TaskStatus.CANCELED


def test_a_failing_function_raises_task_failed(root: Client) -> None:
    failing = root.functions.register("failing", executor="python", payload=FAILING)
    task = root.tasks.create(failing)
    task.invoke()
    with pytest.raises(TaskFailedError, match="KeyError"):
        task.result(timeout=60)
    assert task.describe().failure is not None


def test_a_task_no_execution_service_can_run_says_why(root: Client) -> None:
    function = root.functions.register("builtin-echo", executor="builtin", arguments=["message"])
    function.set_requirements(["a-label-no-service-has"])
    task = root.tasks.create(function, {"message": "never"})
    task.invoke()
    started = time.monotonic()
    with pytest.raises(TaskNotReadyError, match="a-label-no-service-has"):
        task.result()  # no timeout: it says why instead of waiting forever
    assert time.monotonic() - started < 120  # a bound on "forever", not a speed check
    task.cancel()


def test_functions_read_back_as_values(root: Client) -> None:
    function = root.functions.register(
        "builtin-echo", executor="builtin", description="echo", arguments=["message"], usage_quota=3
    )
    described = function.get()
    assert (described.name, described.executor_type, described.owner) == ("builtin-echo", "builtin", "admin")
    assert [a.key for a in described.arguments] == ["message"]
    assert function.update(description="still echo").description == "still echo"
    assert function.usage() == (3, 0)  # the quota survives an update that does not name it
    function.delete()


def test_mistakes_are_refused_naming_what_is_valid(root: Client) -> None:
    """The client raises the server's INVALID_ARGUMENT refusal, made when the mistake is registered."""
    refusals = {
        "executor_type 'pyhton' is not one of: builtin, python, wasm (also: mesapy, wamr)": lambda: (
            root.functions.register("f", executor="pyhton")
        ),
        "name 'builtin-ecko' is not one of: builtin-echo, ": lambda: root.functions.register(
            "builtin-ecko", executor="builtin"
        ),
        "url 'input.enc' is relative; give an absolute URL with a scheme, one of: ": lambda: root.files.register_input(
            "input.enc", Crypto.aes_gcm_128(bytes(16), bytes(12)), bytes(16)
        ),
        "url scheme 's3' is not one of: http, https, fusion, file; an S3 object is reached by a presigned": lambda: (
            root.files.register_output("s3://bucket/key", Crypto.aes_gcm_128(bytes(16)))
        ),
    }
    echo = root.functions.register("builtin-echo", executor="builtin", arguments=["message"])
    refusals["invalid task: function_arguments lacks 'message', which the function needs"] = lambda: root.tasks.create(
        echo, {}
    )
    refusals["executor 'wasm' cannot run this function, whose executor_type is builtin; use executor builtin"] = (
        lambda: root.tasks.create(echo, {"message": "hi"}, executor="wasm")
    )
    for message, mistake in refusals.items():
        with pytest.raises(InvalidArgumentError) as refused:
            mistake()
        assert refused.value.message.startswith(message)
    # The crypto info is checked as it is made, before anything is sent.
    with pytest.raises(InvalidArgumentError, match=r"^schema 'aes-gcm128' is not one of: aes-gcm-128, "):
        Crypto("aes-gcm128", bytes(16), bytes(12))


def test_wrong_password_is_refused(platform: RunningPlatform) -> None:
    with pytest.raises(AuthenticationError):
        _connect(platform, platform.admin_user, "not-the-password")


def test_user_management_refusals_say_what_they_are(platform: RunningPlatform, root: Client) -> None:
    carol = _user(platform, root, "carol")
    with pytest.raises(UserExistsError, match="user id exist"):
        root.users.register("carol", "another-password", "DataOwner", "carol")
    with pytest.raises(AccessDeniedError, match="permission denied"):
        carol.users.register("mallory", "mallory-password", "PlatformAdmin")
    with pytest.raises(InvalidArgumentError, match="invalid role"):
        root.users.register("dave", "dave-password", "NoSuchRole")


def test_connect_local_logs_in_as_the_administrator(platform: RunningPlatform, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `make run` leaves in its state directory: the generated password, the published addresses.
    monkeypatch.delenv("CLOISTER_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("CLOISTER_ADMIN_USER", raising=False)
    password_file = platform.state_dir / "admin-password"
    password_file.write_text(platform.admin_password + "\n")
    try:
        with Client.connect_local(platform.state_dir) as client:
            assert client.user_id == platform.admin_user
            echo = client.functions.register("builtin-echo", executor="builtin", arguments=["message"])
            task = client.tasks.create(echo, {"message": "local"})
            task.invoke()
            assert task.result(timeout=60).return_value == b"local"
    finally:
        password_file.unlink()
