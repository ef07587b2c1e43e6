"""Real workers whose learn agent stalls (not live while its input has lag), or whose agents fail (the worker stops)."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from service.demo_stream import synthetic_candidate_sets, synthetic_preference_events
from tests.service.worker_harness import Worker, produce_json, sample, settings_for, unique_env, wait_processed

pytestmark = pytest.mark.kafka

STALL_TIMEOUT_S = 4
# The worker runs as usual, except that the learn agent blocks forever on the first batch
# holding an event keyed "stall". It stops consuming while the web server keeps serving requests.
STALLING_WORKER = """
import asyncio, sys
import service.agents.learn as learn

original = learn._learn_batch

async def stalling(runtime, messages, *args):
    if any(message.key == b"stall" for message in messages):
        await asyncio.Event().wait()
    await original(runtime, messages, *args)

learn._learn_batch = stalling
from service.cli import main
sys.exit(main(["worker"]))
"""


def live_body(worker: Worker) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(worker.base_url + "/health/live", timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_stalled_learn_agent_with_lag_is_not_live(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = unique_env(kafka_bootstrap, DRLHF_PARTITIONS="1", DRLHF_STALL_TIMEOUT_S=str(STALL_TIMEOUT_S),
                     DRLHF_LAG_INTERVAL_MS="500")
    settings = settings_for(env)
    worker = Worker(env, tmp_path / "worker.log", [sys.executable, "-c", STALLING_WORKER]).start()
    try:
        worker.wait_ready()
        produce_json(settings.bootstrap_servers, settings.topic_preferences, "healthy",
                     synthetic_preference_events(5, seed=1, model_id="healthy"))
        wait_processed(worker, None, 5, timeout_s=60)
        assert sample(worker.metrics(), "dynamic_rlhf_events_total") == 5
        assert live_body(worker) == (200, {"status": "ok", "problems": []})

        # One event the agent blocks on, then more behind it: lag that is never consumed.
        produce_json(settings.bootstrap_servers, settings.topic_preferences, "stall",
                     synthetic_preference_events(4, seed=2, model_id="stall"))
        stalled_at = time.monotonic()
        status, body = live_body(worker)
        while status == 200 and time.monotonic() < stalled_at + 60:
            time.sleep(0.5)
            status, body = live_body(worker)
        failed_after_s = time.monotonic() - stalled_at
        samples = worker.metrics()
    finally:
        worker.kill()

    assert status == 503, worker.log_tail()
    assert body["status"] == "failing"
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith(f"{settings.topic_preferences}[0] has lag 4 and no event consumed for")
    assert STALL_TIMEOUT_S <= failed_after_s < STALL_TIMEOUT_S + 15
    assert sample(samples, "dynamic_rlhf_consumer_lag", topic=settings.topic_preferences, partition="0") == 4
    assert sample(samples, "dynamic_rlhf_events_total") == 5


# The learn task raises outside any single event on the first batch holding an event keyed "boom".
FAILING_WORKER = """
import sys
import service.agents.learn as learn

original = learn._learn_batch

async def failing(runtime, messages, *args):
    if any(message.key == b"boom" for message in messages):
        raise RuntimeError("learn task failure injected by the test")
    await original(runtime, messages, *args)

learn._learn_batch = failing
from service.cli import main
sys.exit(main(["worker"]))
"""


def run_failing_worker(env: dict[str, str], log_path: Path, script: str, topic: str,
                       values: Iterable[dict[str, Any]]) -> tuple[int, str]:
    """Start a worker from *script*, produce *values* with key "boom" to *topic*, and return its exit code and log."""
    settings = settings_for(env)
    failing = Worker(env, log_path, [sys.executable, "-c", script]).start()
    try:
        failing.wait_ready()
        produce_json(settings.bootstrap_servers, topic, "boom", values)
        assert failing.process is not None
        exit_code = failing.process.wait(timeout=60)
    finally:
        failing.kill()
    return exit_code, log_path.read_text(errors="replace")


def test_learn_task_error_stops_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = unique_env(kafka_bootstrap, DRLHF_PARTITIONS="1")
    settings = settings_for(env)
    exit_code, log = run_failing_worker(env, tmp_path / "failing.log", FAILING_WORKER, settings.topic_preferences,
                                        synthetic_preference_events(3, seed=3, model_id="boom"))

    # A worker without the injected failure learns the same events from the last checkpoint.
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        wait_processed(worker, None, 3, timeout_s=60)
        samples = worker.metrics()
    finally:
        worker.stop()

    assert exit_code != 0
    assert "learn: stopping the worker after an unexpected error" in log
    assert "learn task failure injected by the test" in log
    assert sample(samples, "dynamic_rlhf_events_total", model_id="boom", outcome="applied") == 3


FAILING_HARVEST_WORKER = """
import sys
import service.agents.harvest as harvest

original = harvest.observe_delays

def failing(runtime, agent, messages):
    if any(message.key == b"boom" for message in messages):
        raise RuntimeError("harvest failure injected by the test")
    original(runtime, agent, messages)

harvest.observe_delays = failing
from service.cli import main
sys.exit(main(["worker"]))
"""


def test_harvest_agent_error_stops_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = unique_env(kafka_bootstrap, DRLHF_PARTITIONS="1")
    settings = settings_for(env)
    candidate_sets = list(synthetic_candidate_sets(3, seed=5, model_id="boom", n_completions=2))
    exit_code, log = run_failing_worker(env, tmp_path / "failing.log", FAILING_HARVEST_WORKER,
                                        settings.topic_candidates, candidate_sets)

    # A worker without the injected failure harvests the same candidate sets.
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 60
        while sample(worker.metrics(), "dynamic_rlhf_candidates_scored_total", model_id="boom") < 6:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
        samples = worker.metrics()
    finally:
        worker.stop()

    assert exit_code != 0
    assert "harvest: stopping the worker after an unexpected error" in log
    assert "harvest failure injected by the test" in log
    assert sample(samples, "dynamic_rlhf_candidates_scored_total", model_id="boom") == 6
    assert sample(samples, "dynamic_rlhf_records_published_total", model_id="boom") >= 3
    assert sample(samples, "dynamic_rlhf_dead_letters_total") == 0
