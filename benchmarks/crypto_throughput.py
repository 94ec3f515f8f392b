"""File encryption and decryption throughput of ``cloister.crypto.files``, as a ratio to bare streaming AES-GCM.

The baseline is cryptography's streaming AES-128-GCM over the same file, 1 MiB chunks, file to file, so
both sides pay the same disk and page-cache cost; the in-memory figure is printed for reference.

Usage: python -m benchmarks.crypto_throughput [--mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cloister.crypto.files import CHUNK, decrypt_file, encrypt_file
from cloister.model.files import FileCrypto

_KEY = bytes(range(16))
_IV = bytes(12)
_AAD = bytes(8)


def _best(run: Callable[[], object], repeat: int, cleanup: Callable[[], None]) -> float:
    """Fastest of ``repeat`` runs, in seconds (the least disturbed by the rest of the machine)."""
    times = []
    for _ in range(repeat):
        cleanup()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def raw_encrypt(source: Path, destination: Path) -> bytes:
    encryptor = Cipher(algorithms.AES(_KEY), modes.GCM(_IV)).encryptor()
    encryptor.authenticate_additional_data(_AAD)
    in_view = memoryview(bytearray(CHUNK))
    out_view = memoryview(bytearray(CHUNK + 15))
    with source.open("rb") as src, destination.open("wb") as out:
        while n := src.readinto(in_view):
            out.write(out_view[: encryptor.update_into(in_view[:n], out_view)])
        encryptor.finalize()
        out.write(encryptor.tag)
    return encryptor.tag


def raw_decrypt(source: Path, destination: Path, tag: bytes) -> None:
    decryptor = Cipher(algorithms.AES(_KEY), modes.GCM(_IV, tag)).decryptor()
    decryptor.authenticate_additional_data(_AAD)
    remaining = source.stat().st_size - 16
    in_view = memoryview(bytearray(CHUNK))
    out_view = memoryview(bytearray(CHUNK + 15))
    with source.open("rb") as src, destination.open("wb") as out:
        while remaining:
            n = src.readinto(in_view[: min(CHUNK, remaining)])
            out.write(out_view[: decryptor.update_into(in_view[:n], out_view)])
            remaining -= n
        decryptor.finalize()


def in_memory_mb_s(data: bytes) -> float:
    encryptor = Cipher(algorithms.AES(_KEY), modes.GCM(_IV)).encryptor()
    out = bytearray(CHUNK + 15)
    view = memoryview(data)
    started = time.perf_counter()
    for at in range(0, len(data), CHUNK):
        encryptor.update_into(view[at : at + CHUNK], out)
    encryptor.finalize()
    return len(data) / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="size of the test file in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest counts")
    args = parser.parse_args()
    size = args.mib << 20
    megabytes = size / 1e6
    with tempfile.TemporaryDirectory(prefix="cloister-bench-") as tmp:
        work = Path(tmp)
        plain, sealed, opened = work / "plain.bin", work / "sealed.bin", work / "opened.bin"
        with plain.open("wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(1 << 20))

        def clear_sealed() -> None:
            sealed.unlink(missing_ok=True)

        def clear_opened() -> None:
            opened.unlink(missing_ok=True)

        in_memory = in_memory_mb_s(os.urandom(64 << 20))
        print(f"{args.mib} MiB file, best of {args.repeat}; in-memory AES-128-GCM (64 MiB): {in_memory:.0f} MB/s")
        tag = raw_encrypt(plain, sealed)
        base_enc = megabytes / _best(lambda: raw_encrypt(plain, sealed), args.repeat, clear_sealed)
        raw_encrypt(plain, sealed)
        base_dec = megabytes / _best(lambda: raw_decrypt(sealed, opened, tag), args.repeat, clear_opened)
        print(f"{'raw AES-128-GCM encrypt (baseline)':<36} {base_enc:8.0f} MB/s")
        print(f"{'raw AES-128-GCM decrypt (baseline)':<36} {base_dec:8.0f} MB/s")
        schemas = [
            FileCrypto("aes-gcm-128", _KEY, _IV),
            FileCrypto("aes-gcm-256", bytes(range(32)), _IV),
            FileCrypto("teaclave-file-128", _KEY),
        ]
        for crypto in schemas:
            enc = megabytes / _best(lambda c=crypto: encrypt_file(c, plain, sealed), args.repeat, clear_sealed)
            encrypt_file(crypto, plain, sealed)
            dec = megabytes / _best(lambda c=crypto: decrypt_file(c, sealed, opened), args.repeat, clear_opened)
            label = f"{crypto.schema} encrypt_file"
            print(f"{label:<36} {enc:8.0f} MB/s  {enc / base_enc:5.2f} x raw AES-GCM")
            label = f"{crypto.schema} decrypt_file"
            print(f"{label:<36} {dec:8.0f} MB/s  {dec / base_dec:5.2f} x raw AES-GCM")


if __name__ == "__main__":
    main()
