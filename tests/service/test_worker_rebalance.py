"""Two workers in one consumer group split the partitions; models keep learning across the rebalance."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from service.demo_stream import synthetic_preference_events
from service.settings import Settings
from tests.service.worker_harness import (
    Worker,
    free_port,
    offline_replay,
    produce_json,
    sample,
    settings_for,
    unique_env,
    wait_checkpointed,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 4
EVENTS_PER_MODEL = 1200


def _model_ids_per_partition(partitions: int) -> list[str]:
    """Return one model id per partition under the Kafka default (murmur2) partitioner."""
    partitioner = DefaultPartitioner()
    chosen: dict[int, str] = {}
    index = 0
    while len(chosen) < partitions:
        model_id = f"model-{index}"
        partition = partitioner(model_id.encode(), list(range(partitions)), list(range(partitions)))
        chosen.setdefault(partition, model_id)
        index += 1
    return [chosen[p] for p in range(partitions)]


def _worker_env_and_streams(kafka_bootstrap: str, first_seed: int) -> tuple[
        dict[str, str], Settings, list[str], dict[str, list[dict[str, Any]]]]:
    """Return a fresh worker environment, its settings, one model id per partition and each model's events."""
    env = unique_env(kafka_bootstrap, DRLHF_PARTITIONS=str(PARTITIONS))
    model_ids = _model_ids_per_partition(PARTITIONS)
    streams = {m: list(synthetic_preference_events(EVENTS_PER_MODEL, seed=first_seed + i, model_id=m))
               for i, m in enumerate(model_ids)}
    return env, settings_for(env), model_ids, streams


def test_two_workers_split_and_keep_learning(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, settings, model_ids, streams = _worker_env_and_streams(kafka_bootstrap, first_seed=30)
    half = EVENTS_PER_MODEL // 2

    first = Worker(env, tmp_path / "first.log").start()
    second_env = {**env, "DRLHF_WEB_PORT": str(free_port())}
    second = Worker(second_env, tmp_path / "second.log")
    try:
        first.wait_ready()
        targets = {m: produce_json(settings.bootstrap_servers, settings.topic_preferences, m, streams[m][:half])[-1]
                   for m in model_ids}
        wait_checkpointed(settings, targets, worker=first)

        second.start()
        second.wait_ready()
        targets = {m: produce_json(settings.bootstrap_servers, settings.topic_preferences, m, streams[m][half:])[-1]
                   for m in model_ids}
        final = wait_checkpointed(settings, targets, worker=second)
        first_samples = first.metrics()
        second_samples = second.metrics()
    finally:
        second.stop()
        first.stop()

    replayed = offline_replay(settings)
    first_owned = {tp[1] for tp in _assigned(first_samples, settings.topic_preferences)}
    second_owned = {tp[1] for tp in _assigned(second_samples, settings.topic_preferences)}
    assert first_owned and second_owned
    assert first_owned.isdisjoint(second_owned)
    assert first_owned | second_owned == {str(p) for p in range(PARTITIONS)}
    assert sample(second_samples, "dynamic_rlhf_events_total") > 0
    for model_id in model_ids:
        assert final[model_id].load_model().stats().version > EVENTS_PER_MODEL // 2, model_id

    # Every event is in every model exactly once, including the models that stayed on the
    # first worker through the rebalance.
    for model_id in model_ids:
        assert replayed[model_id].version == EVENTS_PER_MODEL, model_id
    _assert_checkpoints_equal_replay(final, replayed, model_ids)


def test_rebalance_while_events_flow(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Events keep arriving while the second worker joins, so the group rebalances with
    # batches in flight, uncheckpointed events and fetches under way.
    env, settings, model_ids, streams = _worker_env_and_streams(kafka_bootstrap, first_seed=50)
    targets: dict[str, tuple[int, int]] = {}
    producer = threading.Thread(target=_produce_in_chunks, args=(settings, streams, targets), daemon=True)

    first = Worker(env, tmp_path / "first.log").start()
    second = Worker({**env, "DRLHF_WEB_PORT": str(free_port())}, tmp_path / "second.log")
    try:
        first.wait_ready()
        producer.start()
        second.start()
        second.wait_ready()
        rebalanced_while_producing = producer.is_alive()
        producer.join(timeout=120)
        assert not producer.is_alive(), "the producer did not finish within 120 s"
        final = wait_checkpointed(settings, targets, worker=second)
        first_samples = first.metrics()
        second_samples = second.metrics()
    finally:
        second.stop()
        first.stop()

    replayed = offline_replay(settings)
    assert rebalanced_while_producing
    assert _assigned(first_samples, settings.topic_preferences)
    assert _assigned(second_samples, settings.topic_preferences)
    _assert_checkpoints_equal_replay(final, replayed, model_ids)


def _assert_checkpoints_equal_replay(final: dict[str, Any], replayed: dict[str, Any], model_ids: list[str]) -> None:
    """Assert that every model applied every event once and equals its offline replay byte for byte."""
    for model_id in model_ids:
        version = final[model_id].load_model().version
        assert version == EVENTS_PER_MODEL, f"{model_id}: {version} updates, expected {EVENTS_PER_MODEL}"
        assert final[model_id].model_bytes == replayed[model_id].to_bytes(), model_id


def _produce_in_chunks(settings: Any, streams: dict[str, list[dict[str, Any]]],
                       targets: dict[str, tuple[int, int]], chunks: int = 24, pause_s: float = 0.5) -> None:
    """Produce every stream in `chunks` rounds with a pause between rounds; record each model's last offset."""
    size = EVENTS_PER_MODEL // chunks
    for round_ in range(chunks):
        for model_id, events in streams.items():
            produced = produce_json(settings.bootstrap_servers, settings.topic_preferences, model_id,
                                    events[round_ * size:(round_ + 1) * size])
            targets[model_id] = produced[-1]
        time.sleep(pause_s)


def _assigned(samples: dict, topic: str) -> set[tuple[str, str]]:
    """Return (topic, partition) pairs whose lag gauge the worker currently reports."""
    return {(dict(labels)["topic"], dict(labels)["partition"]) for (name, labels) in samples
            if name == "dynamic_rlhf_consumer_lag" and dict(labels)["topic"] == topic}
