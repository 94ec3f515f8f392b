"""Plays every party of a built-in's scenario against a running Cloister (``make run``).

Each party is a user of its own with its own keys. Inputs are Teaclave's test data, kept in
``examples/data`` and served from a local HTTP server the way parties would put them online;
outputs come back encrypted under their owner's key and are decrypted here only by that owner.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _scenarios import SCENARIOS, Scenario

from cloister.config import default_state_dir
from cloister.crypto.files import decrypt_file, encrypt_file
from cloister.model.files import FileCrypto
from cloister.sdk import (
    AuthenticationService,
    DataMap,
    FrontendService,
    FunctionArgument,
    FunctionInput,
    FunctionOutput,
    OwnerList,
)

DATA = Path(__file__).resolve().parents[1] / "data"
"""Teaclave's test data, a copy of what the examples need (see ``data/NOTICE.md``)."""


class _Files(SimpleHTTPRequestHandler):
    """GET serves files; PUT stores the body (where the platform uploads outputs)."""

    def do_PUT(self) -> None:
        target = Path(self.directory) / self.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _address(state: Path, endpoint: str) -> str:
    return (state / "run" / endpoint).read_text().strip()


def _clients(state: Path, user: str, password: str) -> tuple[AuthenticationService, FrontendService]:
    """``user``'s logged-in clients of the platform whose state directory is ``state``."""
    verify = (state / "attestation" / "as_root_ca.pem", state / "attestation" / "enclave_info.toml")
    auth = AuthenticationService(_address(state, "authentication_api"), *verify)
    auth.user_login(user, password)
    frontend = FrontendService(_address(state, "frontend"), *verify)
    frontend.metadata = auth.metadata
    return auth, frontend


def _session(state: Path, user: str, password: str) -> FrontendService:
    return _clients(state, user, password)[1]


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """A local HTTP server for ``directory`` (GET, and PUT for outputs); its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(scenario: Scenario, args: argparse.Namespace) -> None:
    state, data = args.state_dir, args.data
    admin_auth, _ = _clients(state, args.admin_user, args.admin_password)
    suffix = os.urandom(3).hex()
    parties = {}
    for party in scenario.parties:
        user = f"{party}-{suffix}"
        admin_auth.user_register(user, f"{user}-password", "PlatformAdmin", "")
        parties[party] = (user, _session(state, user, f"{user}-password"))
    creator_user, creator = parties[scenario.parties[0]]

    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp)) as url:
        served = Path(tmp)
        function_id = creator.register_function(
            scenario.name, scenario.description, "builtin",
            arguments=[FunctionArgument(k) for k in scenario.arguments],
            inputs=[FunctionInput(n) for n in scenario.inputs],
            outputs=[FunctionOutput(n) for n in scenario.outputs],
        )  # fmt: skip
        task_id = creator.create_task(
            function_id, scenario.arguments, "builtin",
            inputs_ownership=[OwnerList(n, [parties[p][0]]) for n, (p, _, _) in scenario.inputs.items()],
            outputs_ownership=[OwnerList(n, [parties[p][0]]) for n, p in scenario.outputs.items()],
        )  # fmt: skip
        keys = {}
        for name, (party, relative, cmac) in scenario.inputs.items():
            _, session = parties[party]
            source = data / relative
            if cmac:  # Teaclave's own encrypted fixture: teaclave-file-128 under the all-zero key
                shutil.copy(source, served / source.name)
                data_id = session.register_input_file(
                    f"{url}/{source.name}", "teaclave-file-128", bytes(16), b"", bytes.fromhex(cmac)
                )
            else:  # the owner encrypts its plaintext under a key of its own
                crypto = FileCrypto("aes-gcm-128", os.urandom(16), os.urandom(12))
                tag = encrypt_file(crypto, source, served / f"{name}.enc")
                data_id = session.register_input_file(f"{url}/{name}.enc", crypto.schema, crypto.key, crypto.iv, tag)
            session.assign_data_to_task(task_id, [DataMap(name, data_id)], [])
        for name, party in scenario.outputs.items():
            _, session = parties[party]
            keys[name] = FileCrypto("aes-gcm-128", os.urandom(16), os.urandom(12))
            data_id = session.register_output_file(f"{url}/out/{name}", "aes-gcm-128", keys[name].key, keys[name].iv)
            session.assign_data_to_task(task_id, [], [DataMap(name, data_id)])
        if len(parties) > 1 or scenario.inputs or scenario.outputs:
            for _, session in parties.values():
                session.approve_task(task_id)
        creator.invoke_task(task_id)
        summary = creator.get_task_result(task_id).decode()
        print(f"{scenario.name}: {summary[:200]}")
        for name, party in scenario.outputs.items():
            plaintext = served / f"{name}.txt"
            decrypt_file(keys[name], served / "out" / name, plaintext)
            lines = plaintext.read_text().splitlines()
            print(f"  {name} (read by {party} only): {len(lines)} lines, first: {lines[0][:80] if lines else ''}")
        print(f"  task {task_id} by {creator_user}: done")


def options(name: str) -> argparse.Namespace:
    """Every example's command line: the platform's state directory, the data directory and the
    admin password (``$CLOISTER_ADMIN_PASSWORD``, else ``<state>/admin-password``, as ``make run``
    leaves it). Exits saying what to do when no platform is running there."""
    parser = argparse.ArgumentParser(description=f"Run {name} against a running Cloister, playing every party.")
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(os.environ))
    parser.add_argument("--data", type=Path, default=DATA, help="the parties' files (default: examples/data)")
    parser.add_argument("--admin-user", default=os.environ.get("CLOISTER_ADMIN_USER", "admin"))
    parser.add_argument("--admin-password", default=os.environ.get("CLOISTER_ADMIN_PASSWORD"))
    args = parser.parse_args()
    if not (args.state_dir / "run" / "frontend").is_file():
        sys.exit(
            f"{name}: no running Cloister has its state in {args.state_dir}. Start one with `make run` in "
            "another terminal (or pass --state-dir DIR, the directory of the one you started)."
        )
    password_file = args.state_dir / "admin-password"
    if not args.admin_password and not password_file.is_file():
        sys.exit(f"{name}: set CLOISTER_ADMIN_PASSWORD to the administrator's password (no {password_file}).")
    args.admin_password = args.admin_password or password_file.read_text().strip()
    return args


def main(name: str) -> None:
    args = options(name)
    run(SCENARIOS[name], args)
