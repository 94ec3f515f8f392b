"""`millionaire.wat`: Yao's millionaires' problem. Two parties learn who is richer, and nothing
else: each encrypts its wealth under a key of its own, and only the richer one's data name comes
out, encrypted for the party who asked. Runs against a running Cloister.

Usage: .venv/bin/python examples/wasm/millionaire.py [--state-dir DIR]
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtins"))  # the examples' shared harness
from _harness import options, serving

from cloister import Client, Credentials, Crypto
from cloister.crypto.files import decrypt_file, encrypt_file

if __name__ == "__main__":
    args = options("wasm millionaire")
    wealth = {"alice": args.data / "wamr_c_millionaire_problem" / "input_a.txt",
              "bob": args.data / "wamr_c_millionaire_problem" / "input_b.txt"}  # fmt: skip
    suffix = os.urandom(3).hex()
    admin_credentials = Credentials(args.admin_user, args.admin_password)
    with Client.connect_local(args.state_dir, credentials=admin_credentials) as admin:
        users = {party: f"{party}-{suffix}" for party in wealth}
        for user in users.values():
            admin.users.register(user, f"{user}-password", "DataOwner", user)
        function = admin.functions.register(
            "millionaire",
            executor="wasm",
            description="which of two inputs holds the larger number",
            payload=(Path(__file__).parent / "millionaire.wat").read_bytes(),
            arguments=["input_file_id1", "input_file_id2", "output_file_id"],
            inputs=["pf_in_a", "pf_in_b"],
            outputs=["pf_out"],
        )

    parties = {party: Client.connect_local(args.state_dir, credentials=Credentials(user, f"{user}-password"))
               for party, user in users.items()}  # fmt: skip
    alice, bob = parties["alice"], parties["bob"]
    try:
        with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp)) as url:
            served = Path(tmp)
            task = alice.tasks.create(
                function.id,
                {"input_file_id1": "pf_in_a", "input_file_id2": "pf_in_b", "output_file_id": "pf_out"},
                executor="wasm",
                inputs_ownership={"pf_in_a": users["alice"], "pf_in_b": users["bob"]},
                outputs_ownership={"pf_out": users["alice"]},
            )
            for party, name in (("alice", "pf_in_a"), ("bob", "pf_in_b")):
                crypto = Crypto.aes_gcm_128(os.urandom(16))  # each party's own key, never shared
                tag = encrypt_file(crypto, wealth[party], served / f"{party}.enc")
                mine = parties[party].files.register_input(f"{url}/{party}.enc", crypto, tag)
                parties[party].tasks.get(task.id).assign(inputs={name: mine})
            result_key = Crypto.aes_gcm_128(os.urandom(16))
            task.assign(outputs={"pf_out": alice.files.register_output(f"{url}/out/richer", result_key)})
            for client in parties.values():
                client.tasks.get(task.id).approve()
            task.invoke()
            written = task.result(timeout=60).return_value.decode()
            decrypt_file(result_key, served / "out" / "richer", served / "richer.txt")
            richer = (served / "richer.txt").read_text()
            print(f"wasm millionaire: {written} bytes written; alice decrypts the answer: {richer} is richer")
    finally:
        for client in parties.values():
            client.close()
