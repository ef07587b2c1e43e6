"""Every Grafana panel query returns data from a real Prometheus scraping a real worker.

The test starts ``dynamic-rlhf worker`` against the test broker with unique topics. It
feeds the worker synthetic preference events, malformed messages (for the dead-letter
panel) and candidate sets. A local Prometheus scrapes the worker every second, and each
panel's PromQL runs through ``/api/v1/query``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dashboard_queries import load_dashboard, panel_queries
from deploy_support import find_tool, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus, pytest.mark.timeout(150)]

PREFERENCE_EVENTS = 240
CANDIDATE_SETS = 30
MALFORMED_MESSAGES = (b"{this is not json", b"\xc1 is never valid msgpack")
STARTUP_TIMEOUT_S = 60.0
SCRAPE_TIMEOUT_S = 30.0


@dataclass
class Process:
    """A subprocess with its log file, stopped with SIGTERM and then SIGKILL."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=30)


def start_process(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> Process:
    with log_path.open("ab") as log:
        popen = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent)
    return Process(popen, log_path)


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int | None, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def wait_for_status(url: str, process: Process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise AssertionError(f"{url}: process exited with {process.popen.returncode}\n{process.log_tail()}")
        if http_get(url)[0] == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"{url} did not return 200 within {timeout_s:.0f} s\n{process.log_tail()}")


@pytest.fixture()
def worker_env(kafka_bootstrap: str) -> dict[str, str]:
    prefix = f"grafana-{uuid.uuid4().hex[:8]}"
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DRLHF_APP_ID": f"{prefix}-app",
        "DRLHF_TOPIC_PREFERENCES": f"{prefix}.preferences",
        "DRLHF_TOPIC_CANDIDATES": f"{prefix}.candidates",
        "DRLHF_TOPIC_RECORDS": f"{prefix}.records",
        "DRLHF_TOPIC_DEAD_LETTERS": f"{prefix}.dead-letters",
        "DRLHF_PARTITIONS": "1",
        "DRLHF_WEB_HOST": "127.0.0.1",
        "DRLHF_WEB_PORT": str(free_port()),
        "DRLHF_CHECKPOINT_INTERVAL_MS": "500",
        "DRLHF_LAG_INTERVAL_MS": "1000",
    }


@pytest.fixture()
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Process]:
    """Run ``dynamic-rlhf worker``; yield it once it is ready."""
    script = Path(sys.executable).with_name("dynamic-rlhf")
    command = [str(script), "worker"] if script.exists() else [sys.executable, "-m", "service", "worker"]
    data_dir = tmp_path / "worker"
    data_dir.mkdir()
    process = start_process(command, data_dir / "worker.log", env={**os.environ, **worker_env})
    process.address = f"127.0.0.1:{worker_env['DRLHF_WEB_PORT']}"
    try:
        wait_for_status(f"http://{process.address}/health/ready", process, STARTUP_TIMEOUT_S)
        yield process
    finally:
        process.stop()


@pytest.fixture()
def prometheus(worker: Process, tmp_path: Path) -> Iterator[str]:
    """Run a Prometheus server that scrapes the worker every second; yield its base URL."""
    binary = find_tool("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian package prometheus)")
    prometheus_dir = tmp_path / "prometheus"
    prometheus_dir.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "dynamic-rlhf", "static_configs": [{"targets": [worker.address]}]}],
    }
    # JSON is valid YAML, so the configuration needs no YAML writer.
    (prometheus_dir / "prometheus.yml").write_text(json.dumps(config), encoding="utf-8")
    port = free_port()
    command = [
        binary,
        f"--config.file={prometheus_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={prometheus_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    process = start_process(command, prometheus_dir / "prometheus.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_status(f"{base_url}/-/ready", process, 30.0)
        yield base_url
    finally:
        process.stop()


def query(base_url: str, promql: str) -> list[dict[str, Any]]:
    """Run an instant query; return the result vector (raise on a query error)."""
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    status, body = http_get(url)
    payload = json.loads(body) if body else {}
    if status != 200 or payload.get("status") != "success":
        raise AssertionError(f"query failed ({status}): {promql}\n{body[:500]!r}")
    return list(payload["data"]["result"])


def scalar(base_url: str, promql: str) -> float | None:
    result = query(base_url, promql)
    return float(result[0]["value"][1]) if result else None


def wait_for_value(base_url: str, promql: str, expected: float, worker: Process) -> None:
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    value = None
    while time.monotonic() < deadline:
        value = scalar(base_url, promql)
        if value == expected:
            return
        time.sleep(0.5)
    raise AssertionError(
        f"{promql} = {value}, expected {expected} within {SCRAPE_TIMEOUT_S:.0f} s\nworker log:\n{worker.log_tail()}"
    )


def produce_stream(env: dict[str, str]) -> None:
    from service.demo_stream import synthetic_candidate_sets, synthetic_preference_events
    from service.produce import produce_events

    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    preferences: list[dict[str, Any] | bytes] = list(synthetic_preference_events(PREFERENCE_EVENTS, seed=11))
    preferences.extend(MALFORMED_MESSAGES)
    candidates: list[dict[str, Any] | bytes] = list(synthetic_candidate_sets(CANDIDATE_SETS, seed=11))

    async def produce() -> None:
        await produce_events(bootstrap, env["DRLHF_TOPIC_PREFERENCES"], preferences)
        await produce_events(bootstrap, env["DRLHF_TOPIC_CANDIDATES"], candidates)

    asyncio.run(produce())


def test_every_panel_query_returns_data(worker_env: dict[str, str], worker: Process, prometheus: str) -> None:
    started = time.monotonic()
    produce_stream(worker_env)

    # Every message is counted once: valid events by their outcome, malformed ones as invalid.
    total = PREFERENCE_EVENTS + len(MALFORMED_MESSAGES)
    wait_for_value(prometheus, 'sum(dynamic_rlhf_events_total{job="dynamic-rlhf"})', total, worker)
    wait_for_value(prometheus, "sum(dynamic_rlhf_dead_letters_total)", len(MALFORMED_MESSAGES), worker)
    wait_for_value(prometheus, "count(dynamic_rlhf_checkpoint_bytes > 0)", 1, worker)
    wait_for_value(prometheus, "sum(dynamic_rlhf_candidates_scored_total)", CANDIDATE_SETS * 4, worker)
    # Two more scrapes, so every rate() window contains at least two samples of each series.
    time.sleep(2.5)

    empty = []
    queries = panel_queries(load_dashboard())
    for panel_query in queries:
        if not query(prometheus, panel_query.expanded()):
            empty.append(f"{panel_query.panel_title} [{panel_query.ref_id}]: {panel_query.expanded()}")

    assert len(queries) == 25
    assert empty == []

    accuracy = scalar(prometheus, 'dynamic_rlhf_progressive_accuracy{model_id="default"}')
    assert accuracy is not None and 0.0 <= accuracy <= 1.0
    assert scalar(prometheus, 'sum(up{job="dynamic-rlhf"})') == 1.0
    assert scalar(prometheus, "dynamic_rlhf_ready") == 1.0
    assert time.monotonic() - started < 60.0
