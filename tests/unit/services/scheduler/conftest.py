"""The scheduler's tests take ``storage``: SQLite and PostgreSQL in turn, or, for a test marked
``fake_storage`` (it inspects the fake's queues and commits, or fails its commits), the in-memory fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scheduler_fakes import FakeStorage, SchedulerEngineStorage
from storage_engines import background_store

STORAGES = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fake_storage: runs against FakeStorage only (it inspects or breaks storage)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage" in metafunc.fixturenames:
        fake = metafunc.definition.get_closest_marker("fake_storage") is not None
        metafunc.parametrize("storage", ["fake"] if fake else STORAGES, indirect=True)


@pytest.fixture
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeStorage | SchedulerEngineStorage]:
    if request.param == "fake":
        yield FakeStorage()
        return
    with background_store(request, request.param, tmp_path) as background:
        yield SchedulerEngineStorage(background)
