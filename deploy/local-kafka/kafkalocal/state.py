"""The JSON state file and the checks that tell whether its pid is still our broker."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .paths import StateLayout


@dataclass
class BrokerState:
    """Contents of ``state.json``, where ``pid`` is None once the broker has been stopped."""

    bootstrap: str
    pid: int | None
    log: str
    console_log: str
    port: int
    controller_port: int
    kafka_version: str
    state_dir: str
    started_at: str


def read_state(layout: StateLayout) -> BrokerState | None:
    """Load ``state.json``, or return None when it is missing or unreadable."""
    try:
        raw = json.loads(layout.state_file.read_text())
        return BrokerState(**raw)
    except (OSError, ValueError, TypeError):
        return None


def write_state(layout: StateLayout, state: BrokerState) -> None:
    """Replace ``state.json`` atomically, so a reader never sees a half-written file."""
    scratch = layout.state_file.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(scratch, layout.state_file)


def process_cmdline(pid: int) -> str | None:
    """Return the command line of ``pid`` with arguments joined by spaces, or None if it is gone."""
    proc_file = Path(f"/proc/{pid}/cmdline")
    if proc_file.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            raw = proc_file.read_bytes()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None

    # Systems without /proc, such as macOS, need ps.
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    output = result.stdout.strip()
    return output or None


def is_our_broker(pid: int | None, layout: StateLayout) -> bool:
    """Tell whether ``pid`` is alive and is a Kafka broker started with this state directory.

    The check guards against pid reuse: after a reboot or a crash the recorded pid may belong
    to an unrelated process, which must never be signalled.
    """
    if pid is None or pid <= 0:
        return False
    cmdline = process_cmdline(pid)
    if cmdline is None:
        return False
    return "kafka.Kafka" in cmdline and str(layout.server_properties) in cmdline
