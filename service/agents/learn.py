"""The learn agent: validate preference events and apply online updates to each model.

Events arrive in micro-batches (``DRLHF_BATCH_MAX_EVENTS`` within ``DRLHF_BATCH_WAIT_MS``)
but are applied one at a time in partition order, so a batch gives the same model as the
same events one by one. Events are acknowledged only by the checkpoint that contains them
(see `service.checkpoint`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

from faust.types import EventT, StreamT

from dynamic_rlhf import FeedbackError
from service.agents.common import RateLimitedLog, dead_letter, event_batches, model_key, publish_record
from service.agents.checkpointing import run_checkpoint
from service.agents.labels import label_pair_records
from service.checkpoint import CheckpointError
from service.codecs import decode_payload
from service.errors import InvalidInput
from service.events import parse_preference_event
from service.runtime import Runtime

logger = logging.getLogger(__name__)
AGENT = "learn"


def register_learn_agent(runtime: Runtime) -> None:
    """Attach the learn agent to the app's preferences topic."""
    settings = runtime.settings
    warn = RateLimitedLog(logger)
    errors = RateLimitedLog(logger)

    @runtime.app.agent(runtime.topics.preferences, name=f"{settings.app_id}.learn", concurrency=1)
    async def learn(stream: StreamT) -> None:
        async for events in event_batches(runtime, stream, AGENT):
            await _learn_batch(runtime, events, warn, errors)


async def _learn_batch(runtime: Runtime, events: list[EventT], warn: RateLimitedLog,
                       errors: RateLimitedLog) -> None:
    # Model gauges (loss, accuracy, norm) are refreshed by each checkpoint round, not here:
    # model.stats() computes the weight norm over every bucket, which costs milliseconds.
    sends: list[Awaitable[Any]] = []
    for event in events:
        started = time.perf_counter()
        try:
            _learn_event(runtime, event, sends, warn)
        except Exception:
            # A bug in this service or the core must not stop the stream, so the event is dead-lettered.
            errors.exception("learn: unexpected error on %s[%d]@%d", event.message.topic,
                             event.message.partition, event.message.offset)
            runtime.metrics.events.labels(runtime.metrics.model_label(model_key(event)), "invalid").inc()
            sends.append(dead_letter(runtime, event, "internal_error", "unexpected error while learning", None))
        runtime.metrics.event_processing.labels(AGENT).observe(time.perf_counter() - started)

    runtime.store.defer_ack(events, sends)
    if runtime.store.checkpoint_due():
        await run_checkpoint(runtime)


def _learn_event(runtime: Runtime, event: EventT, sends: list[Awaitable[Any]], warn: RateLimitedLog) -> str | None:
    """Apply one event; return the model id it changed, or None."""
    message = event.message
    metrics = runtime.metrics
    limits = runtime.settings.limits
    runtime.health.consumed(message.topic, message.partition, message.offset)

    # Decode and validate; a bad message becomes a dead letter and never reaches a model.
    content_type = None
    try:
        obj, content_type = decode_payload(event.value, message.headers, limits)
        examples = parse_preference_event(obj, limits)
    except (InvalidInput, FeedbackError) as exc:
        reason = exc.reason if isinstance(exc, InvalidInput) else "invalid_feedback"
        detail = exc.detail if isinstance(exc, InvalidInput) else str(exc)
        warn.warning("learn: %s[%d]@%d rejected (%s): %s", message.topic, message.partition, message.offset,
                     reason, detail)
        metrics.events.labels(metrics.model_label(model_key(event)), "invalid").inc()
        sends.append(dead_letter(runtime, event, reason, detail, content_type))
        return None

    if not examples:
        metrics.events.labels(metrics.model_label(model_key(event)), "skipped").inc()
        return None

    model_id = examples[0].model_id
    label = metrics.model_label(model_id)
    try:
        state = runtime.store.get(model_id, message.partition)
    except CheckpointError as exc:
        logger.error("learn: model %s has an unreadable checkpoint: %s", model_id, exc)
        raise

    # Replayed after a restart: the checkpoint already contains this event.
    if state.is_applied(message.topic, message.partition, message.offset):
        metrics.events.labels(label, "duplicate").inc()
        return None

    if state.partition != message.partition:
        detail = (f"model {model_id!r} is owned by partition {state.partition}, event came on "
                  f"{message.partition}; key preference events by model id")
        warn.warning("learn: %s", detail)
        metrics.events.labels(label, "invalid").inc()
        sends.append(dead_letter(runtime, event, "wrong_partition", detail, content_type))
        return None

    pairs = 0
    skipped = 0
    for example in examples:
        outcome = state.model.learn_one(example)
        pairs += outcome.pairs
        skipped += outcome.skipped
    state.mark_applied(message.topic, message.partition, message.offset)

    metrics.events.labels(label, "applied" if pairs else "skipped").inc()
    if pairs:
        metrics.pairs_trained.labels(label).inc(pairs)

    if runtime.settings.publish_label_pairs:
        for record in label_pair_records(state.model, examples, event_timestamp_s=message.timestamp):
            sends.append(publish_record(runtime, record))
            metrics.records_published.labels(label, record["kind"]).inc()
    return model_id
