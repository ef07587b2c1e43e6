"""The learn agent: validate preference events and apply online updates to each model.

Events arrive through an `Inbox` (see `service.inbox`): the consumer's fetched messages
are buffered, and each pass takes every buffered message, up to ``DRLHF_BATCH_MAX_EVENTS``,
without waiting for more. The valid events of each model in a batch are learned with one
``learn_many`` call, which applies them in partition order and gives the same model as the
events one by one. Events are acknowledged only by the checkpoint that contains them (see
`service.checkpoint`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from faust.types import Message

from dynamic_rlhf import FeedbackError
from service.agents.common import RateLimitedLog, dead_letter, model_key, observe_delays, publish_record
from service.agents.checkpointing import run_checkpoint
from service.agents.labels import label_pair_records
from service.checkpoint import CheckpointError, ModelState
from service.codecs import decode_payload
from service.errors import InvalidInput
from service.events import parse_preference_event
from service.inbox import AckBatch, Inbox, install_inbox
from service.runtime import Runtime

logger = logging.getLogger(__name__)
AGENT = "learn"


def register_learn_agent(runtime: Runtime) -> Inbox:
    """Route the preferences topic into an inbox and start the learn task on the app."""
    inbox = install_inbox(runtime.app, runtime.topics.preferences)
    warn = RateLimitedLog(logger)
    errors = RateLimitedLog(logger)

    async def learn() -> None:
        await consume(runtime, inbox, warn, errors)

    runtime.app.task(learn)
    return inbox


async def consume(runtime: Runtime, inbox: Inbox, warn: RateLimitedLog, errors: RateLimitedLog) -> None:
    """Learn the inbox's batches until the app stops, and crash the worker on an error outside an event.

    Errors of single events are dead-lettered inside `_learn_batch`. Anything else stops
    the worker, which then restarts from its last checkpoint, rather than leaving a worker
    that looks alive and learns nothing.
    """
    runtime.health.agent_up(AGENT)
    runtime.metrics.agent_alive.labels(AGENT).set(1)
    try:
        async for messages in inbox.batches(runtime.settings.batch_max_events):
            await _learn_batch(runtime, messages, inbox, warn, errors)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.exception("learn: stopping the worker after an unexpected error")
        await runtime.app.crash(exc)
    finally:
        runtime.health.agent_down(AGENT)
        runtime.metrics.agent_alive.labels(AGENT).set(0)


async def _learn_batch(runtime: Runtime, messages: list[Message], inbox: Inbox, warn: RateLimitedLog,
                       errors: RateLimitedLog) -> None:
    # Model gauges (loss, accuracy, norm) are refreshed by each checkpoint round, not here,
    # because model.stats() reads every updated bucket for the weight norm, which takes milliseconds.
    sends: list[Awaitable[Any]] = []
    _record_progress(runtime, messages)

    # One group per model; events of different models are independent, so only the
    # order within a model matters, and a group keeps it.
    groups: dict[str, _Group] = {}
    # Label-pair records score the model right after each event, so those events are learned one by one.
    one_by_one = runtime.settings.publish_label_pairs
    for message in messages:
        started = time.perf_counter()
        try:
            admitted = _admit_event(runtime, message, sends, warn)
        except Exception:
            # A bug in this service or the core must not stop the stream, so the event is dead-lettered.
            _internal_error(runtime, message, sends, errors)
            admitted = None
        if admitted is None:
            runtime.metrics.event_processing.labels(AGENT).observe(time.perf_counter() - started)
            continue

        state, examples = admitted
        group = groups.get(state.model_id)
        if group is None:
            group = groups[state.model_id] = _Group(state)
        group.add(message, examples, time.perf_counter() - started)
        if one_by_one:
            _learn_group(runtime, groups.pop(state.model_id), sends, errors)
    for group in groups.values():
        _learn_group(runtime, group, sends, errors)
    observe_delays(runtime, AGENT, messages)

    runtime.store.defer_ack([AckBatch(inbox, messages)], sends, count=len(messages))
    if runtime.store.checkpoint_due():
        await run_checkpoint(runtime)


def _record_progress(runtime: Runtime, messages: list[Message]) -> None:
    """Tell the health state the last offset taken of each partition in the batch."""
    latest = {(message.topic, message.partition): message.offset for message in messages}
    for (topic, partition), offset in latest.items():
        runtime.health.consumed(topic, partition, offset)


@dataclass
class _Group:
    """Admitted events of one model from one micro-batch, learned with one ``learn_many`` call."""

    state: ModelState
    events: list[Message] = field(default_factory=list)
    examples: list[list[Any]] = field(default_factory=list)
    admit_seconds: list[float] = field(default_factory=list)

    def add(self, event: Message, examples: list[Any], admit_seconds: float) -> None:
        self.events.append(event)
        self.examples.append(examples)
        self.admit_seconds.append(admit_seconds)


def _learn_group(runtime: Runtime, group: _Group, sends: list[Awaitable[Any]], errors: RateLimitedLog) -> None:
    """Learn a group's examples in event order, then count and publish per event.

    ``learn_many`` gives the same model as ``learn_one`` on each example, so grouping
    changes speed, not results.
    """
    state = group.state
    metrics = runtime.metrics
    label = metrics.model_label(state.model_id)
    started = time.perf_counter()
    try:
        outcomes = state.model.learn_many([example for examples in group.examples for example in examples])
    except Exception:
        for event in group.events:
            _internal_error(runtime, event, sends, errors)
        return
    learn_share = (time.perf_counter() - started) / len(group.events)

    # Counters are summed over the group and incremented once; the latency histogram takes each event.
    latency = metrics.event_processing.labels(AGENT)
    applied = total_pairs = position = 0
    for event, examples, admit_seconds in zip(group.events, group.examples, group.admit_seconds):
        pairs = sum(outcome.pairs for outcome in outcomes[position:position + len(examples)])
        position += len(examples)
        applied += 1 if pairs else 0
        total_pairs += pairs
        if runtime.settings.publish_label_pairs:
            for record in label_pair_records(state.model, examples, event_timestamp_s=event.timestamp):
                sends.append(publish_record(runtime, record))
                metrics.records_published.labels(label, record["kind"]).inc()
        latency.observe(admit_seconds + learn_share)

    if applied:
        metrics.events.labels(label, "applied").inc(applied)
    if applied < len(group.events):
        metrics.events.labels(label, "skipped").inc(len(group.events) - applied)
    if total_pairs:
        metrics.pairs_trained.labels(label).inc(total_pairs)


def _internal_error(runtime: Runtime, message: Message, sends: list[Awaitable[Any]], errors: RateLimitedLog) -> None:
    errors.exception("learn: unexpected error on %s[%d]@%d", message.topic, message.partition, message.offset)
    runtime.metrics.events.labels(runtime.metrics.model_label(model_key(message)), "invalid").inc()
    sends.append(dead_letter(runtime, message, "internal_error", "unexpected error while learning", None))


def _admit_event(runtime: Runtime, message: Message, sends: list[Awaitable[Any]],
                 warn: RateLimitedLog) -> tuple[ModelState, list[Any]] | None:
    """Validate one event and mark it applied; return its model state and examples, or None.

    None means the event was dead-lettered, was a replayed duplicate, or held no example.
    """
    metrics = runtime.metrics
    limits = runtime.settings.limits

    # Decode and validate; a bad message becomes a dead letter and never reaches a model.
    content_type = None
    try:
        obj, content_type = decode_payload(message.value, message.headers, limits)
        examples = parse_preference_event(obj, limits)
    except (InvalidInput, FeedbackError) as exc:
        reason = exc.reason if isinstance(exc, InvalidInput) else "invalid_feedback"
        detail = exc.detail if isinstance(exc, InvalidInput) else str(exc)
        warn.warning("learn: %s[%d]@%d rejected (%s): %s", message.topic, message.partition, message.offset,
                     reason, detail)
        metrics.events.labels(metrics.model_label(model_key(message)), "invalid").inc()
        sends.append(dead_letter(runtime, message, reason, detail, content_type))
        return None

    if not examples:
        metrics.events.labels(metrics.model_label(model_key(message)), "skipped").inc()
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
        sends.append(dead_letter(runtime, message, "wrong_partition", detail, content_type))
        return None

    # Marked now, learned when its group is: events of one partition arrive in offset order.
    state.mark_applied(message.topic, message.partition, message.offset)
    return state, examples
