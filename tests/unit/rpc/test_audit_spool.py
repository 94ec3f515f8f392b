"""The audit spool: framed, checksummed, fsynced in groups, replayed after a crash, cut after acknowledgement."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from pathlib import Path

import pytest
from tmpfs import fill, free_bytes, mounted_tmpfs

from cloister.errors import DiskFullError, InternalError
from cloister.rpc import audit_spool
from cloister.rpc.audit_spool import AuditSpool, frame, parse_frames


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


def _opened(directory: Path) -> AuditSpool:
    spool = AuditSpool(directory)
    spool.open()
    return spool


def test_frames_round_trip_and_stop_at_the_first_damaged_one() -> None:
    data = frame(7, b"a") + frame(8, b"bb") + frame(9, b"ccc")
    records, end = parse_frames(data)
    assert [(seq, payload) for seq, payload, _ in records] == [(7, b"a"), (8, b"bb"), (9, b"ccc")]
    assert end == len(data)
    torn = data[:-1]
    assert [seq for seq, _, _ in parse_frames(torn)[0]] == [7, 8]
    flipped = bytearray(data)
    flipped[len(frame(7, b"a")) + 16] ^= 1  # the second payload's byte
    assert [seq for seq, _, _ in parse_frames(bytes(flipped))[0]] == [7]
    assert parse_frames(frame(9, b"x") + frame(8, b"y"))[0][-1][0] == 9  # numbers must rise


def test_appends_are_numbered_durable_and_private(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = _opened(directory)
    first = spool.append_nowait([b"one", b"two"])
    second = spool.append_nowait([b"three"])
    assert second[0] == first[1] + 1 == first[0] + 2
    assert [payload for _, payload in spool.read(0, 10)] == [b"one", b"two", b"three"]
    assert [payload for _, payload in spool.read(first[0], 10)] == [b"two", b"three"]
    assert spool.read(second[0], 10) == []
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in [*_segments(directory), directory / "id"])
    spool.close()


def test_a_torn_last_write_is_dropped_at_replay_and_the_entries_before_it_kept(tmp_path: Path) -> None:
    spool = _opened(tmp_path)
    seqs = spool.append_nowait([b"kept-1", b"kept-2", b"torn"])
    spool.close()
    (segment,) = _segments(tmp_path)
    end = sum(len(frame(seq, payload)) for seq, payload in zip(seqs, [b"kept-1", b"kept-2", b"torn"], strict=True))
    with open(segment, "r+b") as f:  # kill -9 in the middle of writing the last frame: its end never landed
        f.seek(end - 2)
        f.write(b"\0\0")
    replayed = AuditSpool(tmp_path)
    assert replayed.open() == 2
    assert [payload for _, payload in replayed.read(0, 10)] == [b"kept-1", b"kept-2"]
    assert replayed.spool_id == spool.spool_id and len(spool.spool_id) == 16  # the same spool, named alike
    assert segment.stat().st_size == end - len(frame(seqs[2], b"torn"))  # cut, so appends follow whole frames
    later = replayed.append_nowait([b"after"])
    assert later[0] > seqs[2]
    replayed.close()
    assert [payload for _, payload in _opened(tmp_path).read(0, 10)] == [b"kept-1", b"kept-2", b"after"]


def test_concurrent_records_share_one_write_and_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = _opened(tmp_path)
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(audit_spool.os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))

    async def go() -> None:
        await asyncio.gather(*(spool.append(b"entry %d" % n) for n in range(200)))

    asyncio.run(go())
    assert len(spool.read(0, 1000)) == 200
    assert [payload for _, payload in spool.read(0, 1000)] == [b"entry %d" % n for n in range(200)]
    assert len(fsyncs) <= 4  # the segment's directory, then one fsync for the whole group (not 200)
    spool.close()


def test_released_entries_are_deleted_and_numbering_survives_a_restart(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, segment_bytes=64)
    spool.open()
    seqs = [seq for n in range(6) for seq in spool.append_nowait([b"x" * 40 + b"%d" % n])]
    before = _segments(tmp_path)
    assert len(before) == 3  # small segments roll over: two entries each
    spool.release(seqs[2])  # whole segments go: the first; the second still holds an entry to ship
    assert _segments(tmp_path) == before[1:]
    assert [seq for seq, _ in spool.read(0, 10)] == seqs[2:]
    spool.release(seqs[-1])
    assert spool.read(0, 10) == []
    (only,) = _segments(tmp_path)
    assert not only.read_bytes().strip(b"\0") and int(only.stem) == seqs[-1] + 1
    spool.close()
    again = AuditSpool(tmp_path)
    assert again.open() == 0
    assert again.append_nowait([b"next"])[0] > seqs[-1]
    again.close()


def test_disk_full_fails_the_append_and_the_spool_works_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = _opened(tmp_path)
    spool.append_nowait([b"before"])
    real_write = os.pwrite

    def half_then_full(fd: int, data: bytes, offset: int) -> int:
        real_write(fd, bytes(data)[:5], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    async def go() -> None:
        monkeypatch.setattr(audit_spool.os, "pwrite", half_then_full)
        with pytest.raises(DiskFullError) as full:
            await spool.append(b"lost")
        assert str(tmp_path) not in full.value.message and "out of disk space" in full.value.message
        monkeypatch.setattr(audit_spool.os, "pwrite", real_write)
        await spool.append(b"after")

    asyncio.run(go())
    spool.close()
    assert [payload for _, payload in _opened(tmp_path).read(0, 10)] == [b"before", b"after"]


def test_other_write_errors_fail_the_append_as_internal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = _opened(tmp_path)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def go() -> None:
        monkeypatch.setattr(audit_spool.os, "fsync", broken)
        with pytest.raises(InternalError, match="could not be recorded"):
            await spool.append(b"x")

    asyncio.run(go())


def test_a_segment_claims_its_space_so_entries_are_recorded_on_a_full_disk(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", 4 * 1024 * 1024) as disk:
        spool = _opened(disk / "spool")
        spool.append_nowait([b"first"])  # the segment is created, its space claimed
        filler = fill(disk)
        try:
            assert free_bytes(disk) < 4096
            entries = [b"entry %04d on a full disk" % n for n in range(2000)]
            for start in range(0, len(entries), 100):
                spool.append_nowait(entries[start : start + 100])
            with pytest.raises(OSError) as full:  # everyone else is refused
                (disk / "other").write_bytes(b"x" * 65536)
            assert full.value.errno == errno.ENOSPC
        finally:
            filler.unlink()
        assert [payload for _, payload in spool.read(0, 3000)] == [b"first", *entries]
        spool.close()
        replayed = _opened(disk / "spool")  # the unused claim is not taken for a torn write
        assert len(replayed.read(0, 3000)) == 2001
        replayed.close()
