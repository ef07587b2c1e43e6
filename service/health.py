"""Liveness and readiness of a worker, served as ``/health/live`` and ``/health/ready``.

Ready: the model table finished recovery and both agents are consuming. Live: no agent
has stopped, and no input partition with lag has gone without a consumed event for
longer than ``DRLHF_STALL_TIMEOUT_S`` (a watchdog for a stuck agent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from faust import web

if TYPE_CHECKING:
    from service.runtime import Runtime

AGENTS = ("learn", "harvest")


@dataclass
class PartitionProgress:
    offset: int = -1
    consumed_at: float = field(default_factory=time.monotonic)
    lag: int = 0


class HealthState:
    """Agent heartbeats and per-partition progress, updated by agents and the lag monitor."""

    def __init__(self, stall_timeout_s: float) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.agent_running: dict[str, bool] = {name: False for name in AGENTS}
        self.agent_started: dict[str, bool] = {name: False for name in AGENTS}
        self.progress: dict[tuple[str, int], PartitionProgress] = {}
        self.recovered = False

    def agent_up(self, name: str) -> None:
        self.agent_running[name] = True
        self.agent_started[name] = True

    def agent_down(self, name: str) -> None:
        self.agent_running[name] = False

    def consumed(self, topic: str, partition: int, offset: int) -> None:
        """Record that an agent took the message at `offset` from its stream."""
        progress = self.progress.get((topic, partition))
        if progress is None:
            progress = self.progress[(topic, partition)] = PartitionProgress()
        progress.offset = offset
        progress.consumed_at = time.monotonic()

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        progress = self.progress.get((topic, partition))
        if progress is None:
            progress = self.progress[(topic, partition)] = PartitionProgress()
        if lag > 0 and progress.lag == 0:
            # The stall clock starts when lag appears, not at the last event long before it.
            progress.consumed_at = time.monotonic()
        progress.lag = lag

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        for key in partitions:
            self.progress.pop(key, None)

    def readiness(self) -> tuple[bool, list[str]]:
        """Return (ready, reasons it is not)."""
        problems = []
        if not self.recovered:
            problems.append("table recovery has not finished")
        for name, running in self.agent_running.items():
            if not running:
                problems.append(f"agent {name} is not running")
        return not problems, problems

    def liveness(self) -> tuple[bool, list[str]]:
        """Return (live, reasons it is not)."""
        problems = []
        for name, running in self.agent_running.items():
            if self.agent_started[name] and not running:
                problems.append(f"agent {name} stopped")

        now = time.monotonic()
        for (topic, partition), progress in sorted(self.progress.items()):
            idle_s = now - progress.consumed_at
            if progress.lag > 0 and idle_s > self.stall_timeout_s:
                problems.append(
                    f"{topic}[{partition}] has lag {progress.lag} and no event consumed for {idle_s:.0f} s"
                )
        return not problems, problems


def register_health_views(runtime: Runtime) -> None:
    """Serve ``/health/live`` and ``/health/ready`` (200 when healthy, 503 with reasons otherwise)."""
    app = runtime.app
    health = runtime.health

    def refresh_recovery() -> None:
        recovery = app.tables.recovery
        health.recovered = recovery.completed.is_set() and not app.in_recovery
        runtime.metrics.ready.set(1 if health.readiness()[0] else 0)

    @app.page("/health/live")
    async def live(self: web.View, request: web.Request) -> web.Response:
        ok, problems = health.liveness()
        return self.json({"status": "ok" if ok else "failing", "problems": problems}, status=200 if ok else 503)

    @app.page("/health/ready")
    async def ready(self: web.View, request: web.Request) -> web.Response:
        refresh_recovery()
        ok, problems = health.readiness()
        return self.json({"status": "ok" if ok else "not_ready", "problems": problems}, status=200 if ok else 503)

    @app.timer(1.0, name=f"{runtime.settings.app_id}.ready")
    async def ready_gauge() -> None:
        refresh_recovery()
