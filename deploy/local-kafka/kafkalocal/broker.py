"""Start, stop and inspect the broker of one state directory."""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from . import KAFKA_VERSION
from .config import LOOPBACK, is_port_free, pick_free_port, write_config_files
from .install import install
from .paths import StateLayout
from .probe import count_live_brokers
from .state import BrokerState, is_our_broker, process_cmdline, read_state, write_state

HEAP_OPTS_ENV = "DRLHF_KAFKA_HEAP_OPTS"
DEFAULT_HEAP_OPTS = "-Xms256m -Xmx1g"
BIND_ATTEMPTS = 3
STOP_GRACE_S = 30.0


class BrokerError(RuntimeError):
    """The broker failed to start or to stop."""


class PortInUseError(BrokerError):
    """Another process took a port between picking it and the broker binding it."""


@contextmanager
def _locked(layout: StateLayout) -> Iterator[None]:
    # Serialises launcher runs on one state directory, so two concurrent starts cannot
    # launch two brokers.
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def running_broker(layout: StateLayout) -> BrokerState | None:
    """Return the state of the broker running from ``layout``, or None."""
    state = read_state(layout)
    if state is not None and is_our_broker(state.pid, layout):
        return state
    return None


def log_tail(layout: StateLayout, lines: int = 40) -> str:
    """Return the last ``lines`` lines of the broker log and of the JVM console output."""
    parts = []
    for path in (layout.console_log, layout.broker_log):
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        parts.append(f"--- {path} ---\n" + "\n".join(text))
    return "\n".join(parts) or "(no log output)"


def _java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").is_file():
        return str(Path(java_home, "bin", "java"))
    found = shutil.which("java")
    if found is None:
        raise BrokerError("java not found on PATH and JAVA_HOME is not set; install Java 17 or newer")
    return found


def _java_command(libs: Path, layout: StateLayout, main_class: str, *args: str) -> list[str]:
    heap_opts = os.environ.get(HEAP_OPTS_ENV, DEFAULT_HEAP_OPTS).split()
    return [
        _java_binary(), *heap_opts,
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={layout.log4j_config}",
        f"-Dkafka.logs.dir={layout.broker_log.parent}",
        "-cp", str(libs / "*"),
        main_class, *args,
    ]


def new_cluster_id() -> str:
    """Return a random KRaft cluster id: 16 bytes in URL-safe base64 without padding.

    That is the format `kafka-storage random-uuid` prints. Like Kafka's own generator, it
    draws again when the id starts with "-", which the storage tool would read as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_storage(libs: Path, layout: StateLayout) -> None:
    # KRaft needs a formatted log directory.
    if (layout.data_dir / "meta.properties").is_file():
        return
    cluster_id = new_cluster_id()
    command = _java_command(
        libs, layout, "kafka.tools.StorageTool",
        "format", "--cluster-id", cluster_id, "--config", str(layout.server_properties),
    )
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise BrokerError(f"formatting {layout.data_dir} failed (status {result.returncode}):\n{result.stdout}")


def _choose_ports(previous: BrokerState | None, requested_port: int) -> tuple[int, int]:
    # Reuse the ports of the last run when they are still free, so a restarted broker keeps
    # its bootstrap address.
    if requested_port:
        port = requested_port
    elif previous is not None and is_port_free(previous.port):
        port = previous.port
    else:
        port = pick_free_port()

    if previous is not None and previous.controller_port != port and is_port_free(previous.controller_port):
        controller_port = previous.controller_port
    else:
        controller_port = pick_free_port(exclude={port})
    return port, controller_port


def _wait_until_ready(process: subprocess.Popen, layout: StateLayout, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = process.poll()
        if status is not None:
            tail = log_tail(layout)
            if "Address already in use" in tail:
                raise PortInUseError(f"port {port} or the controller port is already in use; pass another --port "
                                     "or stop the process that listens on it")
            raise BrokerError(f"broker exited with status {status} during startup:\n{tail}")
        try:
            if count_live_brokers(LOOPBACK, port) >= 1:
                return
        except OSError:
            pass
        time.sleep(0.5)

    _terminate(process.pid, layout)
    process.wait()
    raise BrokerError(
        f"broker on {LOOPBACK}:{port} did not respond to a Metadata request within {timeout_s:.0f} s "
        f"and was stopped; raise --timeout or check the log:\n{log_tail(layout)}"
    )


def _launch(libs: Path, layout: StateLayout, port: int, controller_port: int) -> subprocess.Popen:
    write_config_files(layout, port, controller_port)
    _format_storage(libs, layout)

    command = _java_command(libs, layout, "kafka.Kafka", str(layout.server_properties))
    with open(layout.console_log, "ab") as console:
        # A new session detaches the broker from the terminal, so Ctrl-C in the shell that
        # ran `start` does not stop it; `stop` does.
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=layout.root,
        )


def start(layout: StateLayout, requested_port: int = 0, timeout_s: float = 120.0,
          fresh: bool = False) -> tuple[BrokerState, bool]:
    """Start the broker unless one already runs from ``layout``.

    Returns the broker state and whether this call started it (False: it was running).
    """
    with _locked(layout):
        existing = running_broker(layout)
        if existing is not None:
            return existing, False

        libs = install()
        if fresh:
            shutil.rmtree(layout.data_dir, ignore_errors=True)
        previous = read_state(layout)

        for attempt in range(1, BIND_ATTEMPTS + 1):
            port, controller_port = _choose_ports(previous, requested_port)
            process = _launch(libs, layout, port, controller_port)
            state = BrokerState(
                bootstrap=f"{LOOPBACK}:{port}", pid=process.pid, log=str(layout.broker_log),
                console_log=str(layout.console_log), port=port, controller_port=controller_port,
                kafka_version=KAFKA_VERSION, state_dir=str(layout.root),
                started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            write_state(layout, state)
            try:
                _wait_until_ready(process, layout, port, timeout_s)
                return state, True
            except PortInUseError:
                if requested_port or attempt == BIND_ATTEMPTS:
                    raise
                previous = None
        raise AssertionError("unreachable: the loop returns or raises")


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie passes the kill(0) check although it has exited, but its command line is empty.
    return process_cmdline(pid) is None


def _terminate(pid: int, layout: StateLayout) -> None:
    # SIGTERM makes Kafka shut down cleanly. SIGKILL follows only after the grace period.
    if not is_our_broker(pid, layout):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if _pid_gone(pid):
            return
        time.sleep(0.2)
    if is_our_broker(pid, layout):
        os.kill(pid, signal.SIGKILL)


def stop(layout: StateLayout) -> BrokerState | None:
    """Stop the broker of ``layout`` and return its former state, or None if none was running.

    Only the pid recorded in the state file is signalled, and only while its command line
    still names this state directory's ``server.properties``.
    """
    with _locked(layout):
        state = running_broker(layout)
        if state is None:
            return None

        assert state.pid is not None
        _terminate(state.pid, layout)
        if not _pid_gone(state.pid):
            raise BrokerError(f"broker pid {state.pid} is still running after SIGKILL")

        stopped = BrokerState(**{**state.__dict__, "pid": None})
        write_state(layout, stopped)
        return state
