"""The launcher's supervision: a service that exits is started again, at once and then after
pauses, and given up on past the restart budget. Processes are stand-ins here; tests/e2e/
test_self_healing.py kills real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister import launcher
from cloister.config import load_settings
from cloister.launcher import RESTART_BUDGET, Platform, _Launch


class Exited:
    """A process that has exited with ``code``."""

    pid = 4242

    def __init__(self, code: int | None = 1) -> None:
        self.code = code

    def poll(self) -> int | None:
        return self.code


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Platform, Clock, list[str]]:
    clock = Clock()
    monkeypatch.setattr(launcher.time, "monotonic", clock)
    platform = Platform(load_settings(None, {}, state_dir=tmp_path), env={})
    spawned: list[str] = []

    def spawn(name: str, launch: _Launch, timeout: float, pinned: object = None) -> None:
        spawned.append(name)
        platform.processes[name] = Exited()  # dies again at once

    monkeypatch.setattr(platform, "_spawn", spawn)
    platform.processes["storage"] = Exited()
    platform._launches["storage"] = _Launch("storage", None, {})
    return platform, clock, spawned


def test_the_first_restart_is_immediate_the_next_ones_wait(world: tuple[Platform, Clock, list[str]]) -> None:
    platform, clock, spawned = world
    platform.supervise()
    assert spawned == ["storage"]
    platform.supervise()  # exited again: the second restart waits its pause
    assert spawned == ["storage"]
    clock.now += 0.5
    platform.supervise()
    assert spawned == ["storage", "storage"]


def test_past_the_budget_the_service_is_given_up(world: tuple[Platform, Clock, list[str]]) -> None:
    platform, clock, spawned = world
    for _ in range(50):
        platform.supervise()
        clock.now += 1.0
    assert len(spawned) == RESTART_BUDGET
    assert "storage" in platform.given_up and "storage" not in platform.processes
    assert f"after {RESTART_BUDGET} restarts" in platform.given_up["storage"]


def test_a_running_or_deliberately_stopped_service_is_left_alone(world: tuple[Platform, Clock, list[str]]) -> None:
    platform, _, spawned = world
    platform.processes["storage"] = Exited(code=None)  # running
    platform.supervise()
    platform.processes.pop("storage")  # as stop_service and kill_service do
    platform.supervise()
    assert spawned == []


def test_restarts_spread_over_time_stay_within_budget(world: tuple[Platform, Clock, list[str]]) -> None:
    platform, clock, spawned = world
    for _ in range(3 * RESTART_BUDGET):
        platform.supervise()
        clock.now += 30.0  # one crash every 30 s is within the budget of 5 per minute
    assert "storage" not in platform.given_up and "storage" in platform.processes
    assert len(spawned) > RESTART_BUDGET
