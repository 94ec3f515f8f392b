"""Values sealed at rest: bound to their key, unreadable with another key, key file private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloister.crypto.sealing import Sealer, load_or_create_key
from cloister.errors import InternalError


def test_seal_unseal_and_context_binding() -> None:
    sealer = Sealer(bytes(32))
    sealed = sealer.seal(b"data", b"key-a")
    assert sealed[0] == 1 and b"data" not in sealed
    assert sealer.unseal(sealed, b"key-a") == b"data"
    with pytest.raises(InternalError):
        sealer.unseal(sealed, b"key-b")
    with pytest.raises(InternalError):
        Sealer(bytes([1] * 32)).unseal(sealed, b"key-a")


def test_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "storage.key"
    key = load_or_create_key(path)
    assert load_or_create_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
