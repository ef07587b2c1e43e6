"""Unit tests of the readiness and liveness rules."""

from __future__ import annotations

import time

from service.health import HealthState


def test_not_ready_until_recovered_and_running() -> None:
    health = HealthState(stall_timeout_s=60)

    ready, problems = health.readiness()
    assert not ready
    assert "table recovery has not finished" in problems

    health.recovered = True
    health.agent_up("learn")
    assert health.readiness() == (False, ["agent harvest is not running"])

    health.agent_up("harvest")
    assert health.readiness() == (True, [])


def test_stopped_agent_not_live() -> None:
    health = HealthState(stall_timeout_s=60)
    health.agent_up("learn")
    health.agent_up("harvest")

    health.agent_down("harvest")

    live, problems = health.liveness()
    assert not live
    assert problems == ["agent harvest stopped"]


def test_stalled_partition_with_lag_not_live() -> None:
    health = HealthState(stall_timeout_s=0.05)
    health.consumed("prefs", 0, 10)
    health.set_lag("prefs", 0, 5)

    assert health.liveness()[0]
    time.sleep(0.1)

    live, problems = health.liveness()
    assert not live
    assert problems[0].startswith("prefs[0] has lag 5")


def test_idle_partition_without_lag_live() -> None:
    health = HealthState(stall_timeout_s=0.05)
    health.consumed("prefs", 0, 10)
    health.set_lag("prefs", 0, 0)
    time.sleep(0.1)

    assert health.liveness() == (True, [])


def test_consuming_resets_stall_clock() -> None:
    health = HealthState(stall_timeout_s=0.05)
    health.set_lag("prefs", 1, 3)
    time.sleep(0.1)

    health.consumed("prefs", 1, 42)

    assert health.liveness() == (True, [])
