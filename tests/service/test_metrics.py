"""Tests of the service metrics with a private registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from service.metrics import OTHER_MODEL_ID, ModelIdLabels, ServiceMetrics


@dataclass
class FakeStats:
    version: int = 12
    progressive_loss: float = 0.5
    progressive_accuracy: float = 0.75
    weight_norm: float = 2.0
    reward_length_correlation: float | None = 0.1


def test_model_labels_bounded() -> None:
    labels = ModelIdLabels(max_model_ids=2)

    assert labels("a") == "a"
    assert labels("b") == "b"
    assert labels("c") == OTHER_MODEL_ID
    assert labels("a") == "a"


def test_contract_names_exported() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)

    metrics.events.labels("default", "applied").inc(3)
    metrics.pairs_trained.labels("default").inc(5)
    metrics.records_published.labels("default", "sft").inc()
    metrics.dead_letters.labels("schema").inc(2)
    metrics.event_processing.labels("learn").observe(0.001)
    metrics.checkpoint_duration.observe(0.02)
    metrics.checkpoints.labels("ok").inc()
    metrics.consumer_lag.labels("drlhf.preferences", "0").set(7)
    metrics.ready.set(1)
    metrics.agent_alive.labels("learn").set(1)

    value = registry.get_sample_value
    assert value("dynamic_rlhf_events_total", {"model_id": "default", "outcome": "applied"}) == 3
    assert value("dynamic_rlhf_pairs_trained_total", {"model_id": "default"}) == 5
    assert value("dynamic_rlhf_records_published_total", {"model_id": "default", "kind": "sft"}) == 1
    assert value("dynamic_rlhf_dead_letters_total", {"reason": "schema"}) == 2
    assert value("dynamic_rlhf_event_processing_seconds_count", {"agent": "learn"}) == 1
    assert value("dynamic_rlhf_checkpoint_duration_seconds_count") == 1
    assert value("dynamic_rlhf_checkpoints_total", {"outcome": "ok"}) == 1
    assert value("dynamic_rlhf_consumer_lag", {"topic": "drlhf.preferences", "partition": "0"}) == 7
    assert value("dynamic_rlhf_ready") == 1
    assert value("dynamic_rlhf_agent_alive", {"agent": "learn"}) == 1


def test_model_stats_copied_to_gauges() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)

    metrics.record_model_stats("m1", FakeStats())

    value = registry.get_sample_value
    assert value("dynamic_rlhf_model_version", {"model_id": "m1"}) == 12
    assert value("dynamic_rlhf_progressive_loss", {"model_id": "m1"}) == 0.5
    assert value("dynamic_rlhf_progressive_accuracy", {"model_id": "m1"}) == 0.75
    assert value("dynamic_rlhf_weight_norm", {"model_id": "m1"}) == 2.0
    assert value("dynamic_rlhf_reward_length_correlation", {"model_id": "m1"}) == 0.1


def test_two_registries_do_not_collide() -> None:
    first = ServiceMetrics(CollectorRegistry())
    second = ServiceMetrics(CollectorRegistry())

    first.dead_letters.labels("schema").inc()

    assert first.registry.get_sample_value("dynamic_rlhf_dead_letters_total", {"reason": "schema"}) == 1
    assert second.registry.get_sample_value("dynamic_rlhf_dead_letters_total", {"reason": "schema"}) is None
