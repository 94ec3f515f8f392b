"""``teaclave-file-128`` files Cloister writes: layout, round trips, and every kind of tampering caught in time."""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloister.crypto.files import decrypt_file, encrypt_file, read_cmac, verify_file
from cloister.crypto.legacy import protected_fs
from cloister.crypto.legacy.protected_fs import NODE, data_node_position, mht_node_position
from cloister.errors import FileIntegrityError
from cloister.model.files import FileCrypto

KEY = FileCrypto("teaclave-file-128", bytes(range(16)))
MULTI_MHT = 96 * 4096 + 3072 + 1  # two MHT nodes, the second holding one data node
TWO_LEVELS = 33 * 96 * 4096 + 5000  # MHT node 33 is a child of MHT node 1


def _physical_nodes(size: int) -> int:
    data_nodes = -(-(size - 3072) // NODE) if size > 3072 else 0
    return data_node_position(data_nodes - 1) + 1 if data_nodes else 1


def _seal(tmp_path: Path, size: int, name: str = "data.enc") -> tuple[Path, bytes, bytes]:
    plaintext = os.urandom(size)
    source = tmp_path / "plain.bin"
    source.write_bytes(plaintext)
    sealed = tmp_path / "sealed" / name
    sealed.parent.mkdir(exist_ok=True)
    cmac = encrypt_file(KEY, source, sealed)
    return sealed, cmac, plaintext


def _metadata(path: Path, key: bytes = KEY.key) -> bytes:
    node = path.read_bytes()[:NODE]
    meta_key = protected_fs.metadata_key(key, node[16:48])
    return AESGCM(meta_key).decrypt(bytes(12), node[96:3468] + node[80:96], None)


def test_physical_numbering_follows_the_reference() -> None:
    assert [data_node_position(d) for d in (0, 1, 95, 96, 191, 192)] == [2, 3, 97, 99, 194, 196]
    assert [mht_node_position(m) for m in (0, 1, 2, 33)] == [1, 98, 195, 3202]


@pytest.mark.parametrize("size", [0, 1, 3071, 3072, 3073, 4096 + 3072, MULTI_MHT, TWO_LEVELS])
def test_round_trip(size: int, tmp_path: Path) -> None:
    sealed, cmac, plaintext = _seal(tmp_path, size)
    assert sealed.stat().st_size == _physical_nodes(size) * NODE
    assert read_cmac(KEY, sealed) == cmac == sealed.read_bytes()[80:96]
    out = tmp_path / "opened"
    assert decrypt_file(KEY, sealed, out, expected_cmac=cmac) == cmac
    assert out.read_bytes() == plaintext
    assert (out.stat().st_mode & 0o777) == 0o600


def test_metadata_fields(tmp_path: Path) -> None:
    sealed, _, plaintext = _seal(tmp_path, 100, name="report.csv")
    header = sealed.read_bytes()[:96]
    assert header[:16] == bytes.fromhex("454c49465f5847530100010000000000")
    assert header[48:80] == bytes(32)  # cpu_svn, attribute_mask
    assert sealed.read_bytes()[3468:] == bytes(NODE - 3468)
    part = _metadata(sealed)
    assert part[:260].rstrip(b"\0") == b"report.csv"
    assert struct.unpack_from("<Q", part, 260)[0] == 100
    assert part[268:300] == bytes(32)  # no root MHT node for a small file
    assert part[300:400] == plaintext and part[400:] == bytes(2972)


def test_every_encryption_is_fresh(tmp_path: Path) -> None:
    first, cmac1, plaintext = _seal(tmp_path, 5000)
    again = tmp_path / "again" / first.name
    again.parent.mkdir()
    cmac2 = encrypt_file(KEY, tmp_path / "plain.bin", again)
    assert cmac1 != cmac2 and first.read_bytes() != again.read_bytes()
    decrypt_file(KEY, again, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == plaintext


def test_second_mht_level_is_checked(tmp_path: Path) -> None:
    sealed, _, _ = _seal(tmp_path, TWO_LEVELS)
    _flip(sealed, mht_node_position(33) * NODE + 7)
    with pytest.raises(FileIntegrityError, match="MHT node 33 does not verify"):
        verify_file(KEY, sealed)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (0, "wrong file id"),
        (8, "unsupported major version"),
        (10, "not encrypted with a user key"),
        (11, "update flag"),
        (20, "metadata does not verify"),  # key_id
        (85, "metadata does not verify"),  # gmac
        (200, "metadata does not verify"),  # encrypted part
        (NODE + 5, "MHT node 0 does not verify"),
        (mht_node_position(1) * NODE + 4000, "MHT node 1 does not verify"),
        (data_node_position(0) * NODE, "data node 0 does not verify"),
        (data_node_position(95) * NODE + 4095, "data node 95 does not verify"),
        (data_node_position(96) * NODE + 17, "data node 96 does not verify"),
    ],
)
def test_tampering_is_caught_and_no_plaintext_remains(offset: int, reason: str, tmp_path: Path) -> None:
    sealed, _, _ = _seal(tmp_path, MULTI_MHT)
    _flip(sealed, offset)
    out = tmp_path / "opened"
    with pytest.raises(FileIntegrityError, match=reason):
        decrypt_file(KEY, sealed, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_truncated_or_extended_file(tmp_path: Path) -> None:
    sealed, _, _ = _seal(tmp_path, MULTI_MHT)
    data = sealed.read_bytes()
    sealed.write_bytes(data[:-NODE])
    with pytest.raises(FileIntegrityError, match="truncated"):
        decrypt_file(KEY, sealed, tmp_path / "out")
    sealed.write_bytes(data + bytes(NODE))
    with pytest.raises(FileIntegrityError, match="longer"):
        decrypt_file(KEY, sealed, tmp_path / "out")
    sealed.write_bytes(data[:100])
    with pytest.raises(FileIntegrityError, match="shorter than its metadata node"):
        read_cmac(KEY, sealed)
    assert not (tmp_path / "out").exists()


def test_wrong_key(tmp_path: Path) -> None:
    sealed, _, _ = _seal(tmp_path, 10_000)
    with pytest.raises(FileIntegrityError, match="wrong key"):
        decrypt_file(FileCrypto("teaclave-file-128", bytes(16)), sealed, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_name_binding(tmp_path: Path) -> None:
    sealed, cmac, plaintext = _seal(tmp_path, 10_000, name="scores.csv")
    renamed = sealed.with_name("other.csv")
    shutil.copy(sealed, renamed)
    with pytest.raises(
        FileIntegrityError, match=re.escape("file name does not match (the file was created as 'scores.csv')")
    ):
        decrypt_file(KEY, renamed, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert decrypt_file(KEY, renamed, tmp_path / "out", name="scores.csv") == cmac
    assert (tmp_path / "out").read_bytes() == plaintext
    assert encrypt_file(KEY, tmp_path / "plain.bin", tmp_path / "x.enc", name="scores.csv")
    decrypt_file(KEY, tmp_path / "x.enc", tmp_path / "out", name="scores.csv")


def test_expected_cmac_is_checked_before_any_plaintext(tmp_path: Path) -> None:
    sealed, cmac, _ = _seal(tmp_path, MULTI_MHT)
    seen: list[int] = []
    with pytest.raises(FileIntegrityError, match="does not match the registered one"):
        decrypt_file(KEY, sealed, tmp_path / "out", expected_cmac=bytes(16), progress=seen.append)
    assert seen == [] and not (tmp_path / "out").exists()
    decrypt_file(KEY, sealed, tmp_path / "out", expected_cmac=cmac, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == MULTI_MHT


@pytest.mark.parametrize("name", ["", "a/b", "x" * 260, "nul\0"])
def test_unusable_names_are_refused(name: str, tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"x")
    with pytest.raises(ValueError, match="basename"):
        encrypt_file(KEY, tmp_path / "p", tmp_path / "out", name=name)
    assert not (tmp_path / "out").exists()


def test_streams_without_a_file_descriptor(tmp_path: Path) -> None:
    """The writer and reader also work on in-memory streams, and agree with the file path."""
    plaintext = os.urandom(TWO_LEVELS)
    sealed = io.BytesIO()
    cmac = protected_fs.write(KEY.key, io.BytesIO(plaintext), sealed, name="mem.bin")
    opened = io.BytesIO()
    assert protected_fs.read(KEY.key, io.BytesIO(sealed.getvalue()), opened, name="mem.bin") == cmac
    assert opened.getvalue() == plaintext
    (tmp_path / "mem.bin").write_bytes(sealed.getvalue())
    decrypt_file(KEY, tmp_path / "mem.bin", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == plaintext


_MEMORY_PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cloister.crypto.files import decrypt_file, encrypt_file, verify_file
    from cloister.model.files import FileCrypto

    work, size = Path(sys.argv[1]), int(sys.argv[2])
    plain = work / "plain.bin"
    with plain.open("wb") as f:
        f.truncate(size)  # sparse: reading it costs no disk
    def peak_kib():
        # VmHWM starts afresh at exec; ru_maxrss would carry the parent's (pytest's) peak over.
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    base = peak_kib()
    for crypto in (FileCrypto("aes-gcm-128", bytes(16), bytes(12)), FileCrypto("teaclave-file-128", bytes(16))):
        sealed, opened = work / "sealed.bin", work / "opened.bin"
        cmac = encrypt_file(crypto, plain, sealed)
        verify_file(crypto, sealed, expected_cmac=cmac)
        decrypt_file(crypto, sealed, opened, expected_cmac=cmac)
        assert opened.stat().st_size == size
        sealed.unlink()
        opened.unlink()
    print(base // 1024, peak_kib() // 1024)
    """
)


def test_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    size = 512 << 20
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(tmp_path), str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    base_mb, peak_mb = map(int, result.stdout.split())
    assert peak_mb - base_mb < 60, (base_mb, peak_mb)
    assert peak_mb < 150, (base_mb, peak_mb)
