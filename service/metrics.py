"""Prometheus metrics of the service, registered into an injectable `CollectorRegistry`.

Names and labels are fixed by the project's metric contract; every name starts with
``dynamic_rlhf_``. The ``model_id`` label takes at most ``max_model_ids`` distinct values
and reports later model ids as ``other`` so a stream of new ids cannot grow the series count.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER_MODEL_ID = "other"

LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
DELAY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
CHECKPOINT_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ModelIdLabels:
    """Bounded mapping from model ids to metric label values."""

    def __init__(self, max_model_ids: int) -> None:
        self.max_model_ids = max_model_ids
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, model_id: str) -> str:
        with self._lock:
            if model_id in self._seen:
                return model_id
            if len(self._seen) < self.max_model_ids:
                self._seen.add(model_id)
                return model_id
        return OTHER_MODEL_ID


class ServiceMetrics:
    """All service metrics; create one per registry."""

    def __init__(self, registry: CollectorRegistry | None = None, max_model_ids: int = 20) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.model_label = ModelIdLabels(max_model_ids)
        r = self.registry

        self.events = Counter("dynamic_rlhf_events", "Preference events by outcome.",
                              ["model_id", "outcome"], registry=r)
        self.pairs_trained = Counter("dynamic_rlhf_pairs_trained", "Preference pairs used for an update.",
                                     ["model_id"], registry=r)
        self.progressive_loss = Gauge("dynamic_rlhf_progressive_loss",
                                      "Mean log-loss of predictions made before each update.", ["model_id"], registry=r)
        self.progressive_accuracy = Gauge("dynamic_rlhf_progressive_accuracy",
                                          "Share of pairs ranked correctly before each update.", ["model_id"],
                                          registry=r)
        self.model_version = Gauge("dynamic_rlhf_model_version", "Number of applied model updates.",
                                   ["model_id"], registry=r)
        self.weight_norm = Gauge("dynamic_rlhf_weight_norm", "L2 norm of the reward model weights.",
                                 ["model_id"], registry=r)
        self.reward_length_correlation = Gauge("dynamic_rlhf_reward_length_correlation",
                                               "Correlation of reward and completion length.", ["model_id"],
                                               registry=r)
        self.candidates_scored = Counter("dynamic_rlhf_candidates_scored", "Candidate completions scored.",
                                         ["model_id"], registry=r)
        self.records_published = Counter("dynamic_rlhf_records_published", "Fine-tune records published.",
                                         ["model_id", "kind"], registry=r)
        self.dead_letters = Counter("dynamic_rlhf_dead_letters", "Messages sent to the dead-letter topic.",
                                    ["reason"], registry=r)
        self.event_processing = Histogram("dynamic_rlhf_event_processing_seconds",
                                          "Processing time of one input event.", ["agent"],
                                          buckets=LATENCY_BUCKETS_S, registry=r)
        self.event_delay = Histogram("dynamic_rlhf_event_delay_seconds",
                                     "Time from an input event's Kafka timestamp to the end of its processing.",
                                     ["agent"], buckets=DELAY_BUCKETS_S, registry=r)
        self.checkpoint_bytes = Gauge("dynamic_rlhf_checkpoint_bytes", "Size of the last checkpoint value.",
                                      ["model_id"], registry=r)
        self.checkpoint_duration = Histogram("dynamic_rlhf_checkpoint_duration_seconds",
                                             "Time to write one checkpoint round, including the broker ack.",
                                             buckets=CHECKPOINT_BUCKETS_S, registry=r)
        self.checkpoints = Counter("dynamic_rlhf_checkpoints", "Checkpoint rounds by outcome.", ["outcome"],
                                   registry=r)
        self.consumer_lag = Gauge("dynamic_rlhf_consumer_lag", "Messages not yet consumed, per input partition.",
                                  ["topic", "partition"], registry=r)
        self.ready = Gauge("dynamic_rlhf_ready", "1 once table recovery finished and agents run.", registry=r)
        self.agent_alive = Gauge("dynamic_rlhf_agent_alive", "1 while the agent consumes its stream.", ["agent"],
                                 registry=r)

    def record_model_stats(self, model_id: str, stats: object) -> None:
        """Copy a model's `ModelStats` into the per-model gauges."""
        label = self.model_label(model_id)
        self.progressive_loss.labels(label).set(float(getattr(stats, "progressive_loss")))
        self.progressive_accuracy.labels(label).set(float(getattr(stats, "progressive_accuracy")))
        self.model_version.labels(label).set(float(getattr(stats, "version")))
        self.weight_norm.labels(label).set(float(getattr(stats, "weight_norm")))
        correlation = getattr(stats, "reward_length_correlation")
        if correlation is not None:
            self.reward_length_correlation.labels(label).set(float(correlation))
