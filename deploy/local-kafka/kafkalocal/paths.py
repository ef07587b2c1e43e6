"""Folder layout of the jar cache and of a broker's state directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import KAFKA_VERSION

HOME_ENV = "DRLHF_KAFKA_HOME"
STATE_DIR_ENV = "DRLHF_KAFKA_STATE_DIR"


def kafka_home() -> Path:
    """Return the cache root: ``$DRLHF_KAFKA_HOME`` or ``~/.cache/dynamic-rlhf/kafka``."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "dynamic-rlhf" / "kafka"


def libs_dir() -> Path:
    """Folder with the broker jars of the pinned Kafka release."""
    return kafka_home() / f"kafka_2.13-{KAFKA_VERSION}" / "libs"


@dataclass(frozen=True)
class StateLayout:
    """Files of one broker instance; each state directory runs at most one broker."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def broker_log(self) -> Path:
        return self.root / "logs" / "server.log"

    @property
    def console_log(self) -> Path:
        """stdout and stderr of the JVM (startup failures that happen before log4j is up)."""
        return self.root / "logs" / "console.log"

    @property
    def lock_file(self) -> Path:
        return self.root / "launcher.lock"


def state_layout(explicit: str | None = None) -> StateLayout:
    """Pick the state directory: the argument, ``$DRLHF_KAFKA_STATE_DIR``, or ``<home>/state``."""
    chosen = explicit or os.environ.get(STATE_DIR_ENV)
    if chosen:
        return StateLayout(Path(chosen).expanduser().resolve())
    return StateLayout(kafka_home() / "state")
