"""Objects one worker shares between its agents, timers and web views."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TableT

from service.checkpoint import ModelStore
from service.health import HealthState
from service.metrics import ServiceMetrics
from service.settings import Settings
from service.topics import Topics


@dataclass
class Runtime:
    """The app plus its topics, model table, model store, metrics and health state."""

    settings: Settings
    app: faust.App
    topics: Topics
    table: TableT
    store: ModelStore
    metrics: ServiceMetrics
    health: HealthState
    # Incremented on every partition revocation and assignment, so a lag reading that spans a
    # rebalance can tell that its partition list is stale.
    assignment_generation: int = 0
