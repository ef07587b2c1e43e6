"""Tests of deploy/local-kafka/kafka-local: start, second start, status, stop, pid safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO_ROOT / "deploy" / "local-kafka" / "kafka-local"
EXIT_NOT_RUNNING = 3

sys.path.insert(0, str(KAFKA_LOCAL.parent))
from kafkalocal import KAFKA_VERSION  # noqa: E402
from kafkalocal.broker import new_cluster_id  # noqa: E402
from kafkalocal.install import jars_present  # noqa: E402
from kafkalocal.probe import count_live_brokers  # noqa: E402


def _launcher(state_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(KAFKA_LOCAL), "--state-dir", str(state_dir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def _pid_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(cmdline)


def _brokers_answering(bootstrap: str) -> int:
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    return count_live_brokers(host, int(port))


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process whose pid gets written into a state file."""
    process = subprocess.Popen(["sleep", "120"])
    yield process
    process.kill()
    process.wait()


def test_cluster_ids_never_start_with_a_dash() -> None:
    # About one random id in 64 starts with "-", which made `kafka-storage format` fail.
    ids = [new_cluster_id() for _ in range(5000)]

    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert {len(cluster_id) for cluster_id in ids} == {22}
    assert len(set(ids)) == 5000
    assert any("-" in cluster_id[1:] for cluster_id in ids)  # the URL-safe alphabet is kept


def test_status_and_stop_without_broker(tmp_path: Path) -> None:
    status = _launcher(tmp_path, "status")
    stop = _launcher(tmp_path, "stop")

    assert status.returncode == EXIT_NOT_RUNNING
    assert status.stdout.startswith("not running")
    assert stop.returncode == 0
    assert "no broker running" in stop.stdout


def test_stop_ignores_foreign_pid(tmp_path: Path, bystander: subprocess.Popen[bytes]) -> None:
    # A stale state file whose pid now belongs to an unrelated process.
    state = {
        "bootstrap": "127.0.0.1:1", "pid": bystander.pid, "log": str(tmp_path / "server.log"),
        "console_log": str(tmp_path / "console.log"), "port": 1, "controller_port": 2,
        "kafka_version": KAFKA_VERSION, "state_dir": str(tmp_path), "started_at": "2026-01-01T00:00:00+00:00",
    }
    (tmp_path / "state.json").write_text(json.dumps(state))

    status = _launcher(tmp_path, "status")
    stop = _launcher(tmp_path, "stop")

    assert status.returncode == EXIT_NOT_RUNNING
    assert stop.returncode == 0
    assert "no broker running" in stop.stdout
    assert bystander.poll() is None


def test_install_skips_mvn_when_jars_cached(tmp_path: Path) -> None:
    if not jars_present():
        pytest.skip("Kafka jars are not cached yet; `kafka-local install` fetches them")

    # Without mvn on PATH the install step must still succeed from the cache.
    env = {**os.environ, "PATH": "/nonexistent"}
    result = _launcher(tmp_path, "install", env=env)

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).joinpath(f"kafka-clients-{KAFKA_VERSION}.jar").is_file()


@pytest.mark.kafka
@pytest.mark.slow
def test_second_broker_lifecycle(tmp_path: Path, kafka_bootstrap: str) -> None:
    env = {**os.environ, "DRLHF_KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m"}
    try:
        started_at = time.monotonic()
        first = _launcher(tmp_path, "start", env=env)
        start_seconds = time.monotonic() - started_at
        assert first.returncode == 0, first.stderr
        bootstrap = first.stdout.strip()
        state = json.loads((tmp_path / "state.json").read_text())

        again = _launcher(tmp_path, "start", env=env)
        status = _launcher(tmp_path, "status", "--json")
        status_state = json.loads(status.stdout)

        assert bootstrap.startswith("127.0.0.1:")
        assert bootstrap != kafka_bootstrap
        assert state["bootstrap"] == bootstrap
        assert state["log"] == str(tmp_path / "logs" / "server.log")
        assert Path(state["log"]).stat().st_size > 0
        assert _pid_alive(state["pid"])
        assert _brokers_answering(bootstrap) == 1
        # The start timeout is 120 s; a start close to it points at an overloaded machine.
        assert start_seconds < 120

        assert again.returncode == 0
        assert again.stdout.strip() == bootstrap
        assert f"already running: Kafka {KAFKA_VERSION} pid {state['pid']}" in again.stderr

        assert status.returncode == 0
        assert status_state["pid"] == state["pid"]
        assert status_state["bootstrap"] == bootstrap

        stop = _launcher(tmp_path, "stop")
        after = _launcher(tmp_path, "status")

        assert stop.returncode == 0
        assert f"stopped pid {state['pid']}" in stop.stdout
        assert not _pid_alive(state["pid"])
        assert after.returncode == EXIT_NOT_RUNNING
        # Stopping the second broker leaves the session broker running.
        assert _brokers_answering(kafka_bootstrap) == 1
    finally:
        _launcher(tmp_path, "stop")
