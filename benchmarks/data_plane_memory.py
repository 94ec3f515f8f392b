"""Peak memory of the execution service while a task streams a large encrypted input.

A 1 GiB AES-GCM-128 list of "exposed passwords" is served over HTTP; a password-check task
downloads, verifies, decrypts and scans it. The execution service's peak resident set (VmHWM)
is read from /proc before and after.

Usage: python -m benchmarks.data_plane_memory [--mib 1024]
"""

from __future__ import annotations

import argparse
import base64
import functools
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloister.crypto.files import encrypt_file
from cloister.model.files import FileCrypto
from cloister.sdk import AuthenticationService, DataMap, FrontendService, FunctionInput, OwnerList
from cloister.testing import start_platform

_KEY, _IV = bytes(range(16)), bytes(range(12))


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain, served = work / "exposed.txt", work / "served"
        served.mkdir()
        line = b"correct-horse-battery-staple-0000\n"
        block = line * (1 << 15)
        with plain.open("wb") as f:
            for _ in range((args.mib << 20) // len(block)):
                f.write(block)
        crypto = FileCrypto("aes-gcm-128", _KEY, _IV)
        cmac = encrypt_file(crypto, plain, served / "exposed.enc")
        plain.unlink()
        size_mib = (served / "exposed.enc").stat().st_size / (1 << 20)

        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        # The input is served on loopback, which tasks may reach only when allowed.
        loopback = {"CLOISTER_EXECUTION__ALLOWED_NETWORKS": "127.0.0.0/8"}
        platform = start_platform(work, executor_timeout=120.0, env=loopback)
        try:
            auth = AuthenticationService(*platform.connection_args("authentication"))
            auth.user_login(platform.admin_user, platform.admin_password)
            frontend = FrontendService(*platform.connection_args("frontend"))
            frontend.metadata = dict(auth.metadata or {})
            function_id = frontend.register_function(
                "builtin-password-check", "memory", "builtin",
                inputs=[FunctionInput("password"), FunctionInput("exposed_passwords")],
            )  # fmt: skip
            sealed = AESGCM(_KEY).encrypt(_IV, b"hunter2\n", bytes(8))
            password = frontend.register_input_file(
                "data:text/plain;base64," + base64.b64encode(sealed).decode(), "aes-gcm-128", _KEY, _IV, sealed[-16:]
            )
            url = f"http://127.0.0.1:{server.server_address[1]}/exposed.enc"
            exposed = frontend.register_input_file(url, "aes-gcm-128", _KEY, _IV, cmac)
            me = platform.admin_user
            task_id = frontend.create_task(
                function_id, {}, "builtin",
                inputs_ownership=[OwnerList("password", [me]), OwnerList("exposed_passwords", [me])],
            )  # fmt: skip
            files = [DataMap("password", password), DataMap("exposed_passwords", exposed)]
            frontend.assign_data_to_task(task_id, files)
            pid = platform.platform.processes["execution"].pid
            idle = _peak_mib(pid)
            started = time.perf_counter()
            frontend.invoke_task(task_id)
            result = frontend.get_task_result(task_id)
            elapsed = time.perf_counter() - started
            peak = _peak_mib(pid)
        finally:
            platform.stop()
            server.shutdown()
    print(f"input {size_mib:.0f} MiB (aes-gcm-128) streamed in {elapsed:.1f} s, result {result.decode()}")
    print(f"execution service peak RSS {peak:.0f} MiB (idle peak {idle:.0f} MiB, growth {peak - idle:.0f} MiB)")


if __name__ == "__main__":
    main()
