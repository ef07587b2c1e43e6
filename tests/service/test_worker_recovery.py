"""Crash-safety of the model table: graceful restart and SIGKILL mid-stream on a real broker."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from service.demo_stream import synthetic_preference_events
from service.events import schema_validator
from tests.service.worker_harness import (
    Worker,
    consume_all,
    create_topics,
    offline_replay,
    produce_json,
    sample,
    settings_for,
    unique_env,
    wait_checkpointed,
    wait_processed,
)

if TYPE_CHECKING:
    from tests.conftest import PrivateBroker

pytestmark = pytest.mark.kafka

MODEL_ID = "crash"
RECORD_VALIDATOR = schema_validator("fine_tune_record")


def test_restart_recovers_model(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = unique_env(kafka_bootstrap, DRLHF_PUBLISH_LABEL_PAIRS="true")
    settings = settings_for(env)
    events = list(synthetic_preference_events(1600, seed=21, model_id=MODEL_ID))
    first = Worker(env, tmp_path / "first.log").start()
    try:
        first.wait_ready()
        positions = produce_json(settings.bootstrap_servers, settings.topic_preferences, MODEL_ID, events[:800])
        before = wait_checkpointed(settings, {MODEL_ID: positions[-1]}, worker=first)[MODEL_ID]
    finally:
        first.stop()

    second = Worker(env, tmp_path / "second.log").start()
    try:
        second.wait_ready()
        positions = produce_json(settings.bootstrap_servers, settings.topic_preferences, MODEL_ID, events[800:])
        after = wait_checkpointed(settings, {MODEL_ID: positions[-1]}, worker=second)[MODEL_ID]
        samples = second.metrics()
    finally:
        second.stop()

    replayed = offline_replay(settings)[MODEL_ID]
    strict_pairs = sum(event["kind"] == "pair" for event in events)
    records = [json.loads(m.value) for m in consume_all(settings.bootstrap_servers, settings.topic_records)]
    assert len(records) == strict_pairs
    assert len({record["record_id"] for record in records}) == strict_pairs
    assert {record["kind"] for record in records} == {"preference"}
    assert {record["policy"]["name"] for record in records} == {"human_label"}
    assert {record["rank"] for record in records} == {1}
    assert all(record["reward"] == record["chosen_reward"] for record in records)
    for record in records:
        assert not list(RECORD_VALIDATOR.iter_errors(record)), record["record_id"]
    assert first.process is not None and first.process.returncode == 0
    assert before.load_model().stats().version < after.load_model().stats().version
    assert after.model_bytes == replayed.to_bytes()
    assert sample(samples, "dynamic_rlhf_events_total", model_id=MODEL_ID) == 800
    assert sample(samples, "dynamic_rlhf_events_total", model_id=MODEL_ID, outcome="duplicate") == 0


def test_sigkill_mid_stream_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Small checkpoint rounds and batches put the kills between, and inside, checkpoint rounds.
    env = unique_env(kafka_bootstrap, DRLHF_CHECKPOINT_EVERY_EVENTS="300", DRLHF_CHECKPOINT_INTERVAL_MS="200",
                     DRLHF_BATCH_MAX_EVENTS="50")
    settings = settings_for(env)
    events = list(synthetic_preference_events(6000, seed=22, model_id=MODEL_ID))
    create_topics(settings)
    positions = produce_json(settings.bootstrap_servers, settings.topic_preferences, MODEL_ID, events)

    kill_points = (900, 1500)
    workers = []
    try:
        for round_number, kill_after in enumerate(kill_points):
            worker = Worker(env, tmp_path / f"worker{round_number}.log").start()
            workers.append(worker)
            worker.wait_ready()
            wait_processed(worker, MODEL_ID, kill_after)
            worker.kill(signal.SIGKILL)

        last = Worker(env, tmp_path / "last.log").start()
        try:
            last.wait_ready()
            final = wait_checkpointed(settings, {MODEL_ID: positions[-1]}, worker=last)[MODEL_ID]
        finally:
            last.stop()
    finally:
        for worker in workers:
            worker.kill(signal.SIGKILL)  # no-op for workers already killed

    replayed = offline_replay(settings)[MODEL_ID]
    assert all(worker.process is not None and worker.process.returncode == -signal.SIGKILL for worker in workers)
    assert final.load_model().version == replayed.version
    assert final.model_bytes == replayed.to_bytes()


def test_sigterm_checkpoints_and_exits_promptly(kafka_bootstrap: str, tmp_path: Path) -> None:
    # No count or interval checkpoint before the stop, so every event is still unacknowledged then.
    env = unique_env(kafka_bootstrap, DRLHF_PARTITIONS="1", DRLHF_CHECKPOINT_EVERY_EVENTS="1000000",
                     DRLHF_CHECKPOINT_INTERVAL_MS="600000")
    settings = settings_for(env)
    first = Worker(env, tmp_path / "first.log").start()
    try:
        first.wait_ready()
        positions = produce_json(settings.bootstrap_servers, settings.topic_preferences, "term",
                                 synthetic_preference_events(300, seed=31, model_id="term"))
        wait_processed(first, "term", 300)
        exit_code, stop_seconds = first.terminate()
    finally:
        first.kill()

    checkpoint = wait_checkpointed(settings, {"term": positions[-1]}, timeout_s=10)["term"]

    # The stop committed the consumed offsets, so a new worker has nothing to consume again.
    second = Worker(env, tmp_path / "second.log").start()
    try:
        second.wait_ready()
        time.sleep(3)
        replayed_events = sample(second.metrics(), "dynamic_rlhf_events_total")
    finally:
        second.stop()

    assert exit_code == 0
    assert stop_seconds < 15, (tmp_path / "first.log").read_text(errors="replace")[-3000:]
    assert "wait_empty: Waiting" not in (tmp_path / "first.log").read_text(errors="replace")
    assert checkpoint.model_bytes == offline_replay(settings)["term"].to_bytes()
    assert replayed_events == 0


def test_sigterm_without_broker_exits_after_deadline(private_kafka: PrivateBroker, tmp_path: Path) -> None:
    # The worker's stop waits for the broker, so only the shutdown deadline ends the process.
    env = unique_env(private_kafka.bootstrap, DRLHF_PARTITIONS="1", DRLHF_SHUTDOWN_TIMEOUT_S="5")
    settings = settings_for(env)
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        produce_json(settings.bootstrap_servers, settings.topic_preferences, "gone",
                     synthetic_preference_events(100, seed=41, model_id="gone"))
        wait_processed(worker, "gone", 100)
        private_kafka.stop()
        exit_code, stop_seconds = worker.terminate()
    finally:
        worker.kill()

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert exit_code == 1, log[-3000:]
    assert 5 <= stop_seconds < 15
    assert "Worker did not stop within 5 s of SIGTERM (DRLHF_SHUTDOWN_TIMEOUT_S); exiting with status 1." in log
