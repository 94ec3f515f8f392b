"""``cloister.executors`` loads its names on first use, so the sandbox template stays small."""

from __future__ import annotations

import subprocess
import sys

import cloister.executors


def test_every_exported_name_resolves() -> None:
    for name in cloister.executors.__all__:
        assert getattr(cloister.executors, name).__name__ == name
    assert sorted(dir(cloister.executors)) == sorted(set(dir(cloister.executors)) | set(cloister.executors.__all__))


def test_the_sandbox_template_loads_nothing_of_the_service_side() -> None:
    """The template (trusted, forked for every task) imports its runtimes only: no settings,
    no event loop, no gRPC. Whatever it imports is in every sandbox and adds to every restart."""
    probe = (
        "import sys, cloister.executors.sandbox.zygote as z; z._preload(); "
        "print(' '.join(m for m in ('cloister.config', 'asyncio', 'grpc', 'pydantic') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
