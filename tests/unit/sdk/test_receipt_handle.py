"""The SDK's Receipt: fetched once with its manifest, saved as the two files the CLI checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.errors import AttestationError
from cloister.sdk._receipts import Receipt


def test_token_and_manifest_come_from_one_fetch(tmp_path: Path) -> None:
    calls: list[int] = []

    def fetch() -> tuple[str, bytes]:
        calls.append(1)
        return "aGVh.cGF5.c2ln", b'{"approvals":{},"terms":{}}'

    receipt = Receipt(fetch=fetch)
    assert repr(receipt) == "Receipt(not fetched)" and not calls
    assert receipt.manifest == b'{"approvals":{},"terms":{}}'
    assert receipt.token == "aGVh.cGF5.c2ln" and len(calls) == 1
    receipt.save(tmp_path / "receipt.jws", tmp_path / "manifest.json")
    assert (tmp_path / "receipt.jws").read_bytes() == b"aGVh.cGF5.c2ln\n"
    assert (tmp_path / "manifest.json").read_bytes() == b'{"approvals":{},"terms":{}}'  # exact bytes: hashed


def test_no_receipt_or_no_manifest_says_so(tmp_path: Path) -> None:
    empty = Receipt(fetch=lambda: ("", b""))
    with pytest.raises(AttestationError, match="has no receipt"):
        _ = empty.manifest
    token_only = Receipt("aGVh.cGF5.c2ln")
    assert token_only.manifest is None
    with pytest.raises(AttestationError, match="no manifest to save"):
        token_only.save(tmp_path / "receipt.jws", tmp_path / "manifest.json")
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "receipt.jws").exists()
