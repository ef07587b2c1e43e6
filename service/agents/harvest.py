"""The harvest agent: score candidate sets and publish the records the policy accepts.

The agent reads the model that the learn agent keeps in memory on the same worker (both
inputs are co-partitioned with the model table). It never changes a model. A batch is
acknowledged once the broker acknowledged every record and dead letter it produced, so
records are published at least once. Record ids are deterministic, so a consumer can drop
repeats by id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import Any

from faust.types import EventT, StreamT

from dynamic_rlhf import FeedbackError
from service.agents.common import RateLimitedLog, dead_letter, event_batches, observe_delays, publish_record
from service.codecs import decode_payload
from service.errors import InvalidInput
from service.events import parse_candidate_set
from service.runtime import Runtime

logger = logging.getLogger(__name__)
AGENT = "harvest"


def register_harvest_agent(runtime: Runtime) -> None:
    """Attach the harvest agent to the app's candidates topic."""
    settings = runtime.settings
    warn = RateLimitedLog(logger)
    errors = RateLimitedLog(logger)

    @runtime.app.agent(runtime.topics.candidates, name=f"{settings.app_id}.harvest", concurrency=1)
    async def harvest(stream: StreamT) -> None:
        # Errors of single candidate sets are dead-lettered in `_harvest_batch`. Anything else
        # stops the worker, whose successor harvests the unacknowledged sets again, rather than
        # letting Faust restart the agent past a batch that was neither harvested nor dead-lettered.
        try:
            async for events in event_batches(runtime, stream, AGENT):
                await _harvest_batch(runtime, events, warn, errors)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("harvest: stopping the worker after an unexpected error")
            await runtime.app.crash(exc)


async def _harvest_batch(runtime: Runtime, events: list[EventT], warn: RateLimitedLog, errors: RateLimitedLog) -> None:
    sends: list[Awaitable[Any]] = []
    for event in events:
        started = time.perf_counter()
        try:
            _harvest_event(runtime, event, sends, warn)
        except Exception:
            errors.exception("harvest: unexpected error on %s[%d]@%d", event.message.topic, event.message.partition,
                             event.message.offset)
            sends.append(dead_letter(runtime, event.message, "internal_error", "unexpected error while harvesting", None))
        runtime.metrics.event_processing.labels(AGENT).observe(time.perf_counter() - started)

    observe_delays(runtime, AGENT, [event.message for event in events])
    for send in sends:
        await send
    for event in events:
        event.ack()

def _harvest_event(runtime: Runtime, event: EventT, sends: list[Awaitable[Any]], warn: RateLimitedLog) -> None:
    message = event.message
    metrics = runtime.metrics
    limits = runtime.settings.limits
    runtime.health.consumed(message.topic, message.partition, message.offset)

    content_type = None
    try:
        obj, content_type = decode_payload(event.value, message.headers, limits)
        candidates = parse_candidate_set(obj, limits)
    except (InvalidInput, FeedbackError) as exc:
        reason = exc.reason if isinstance(exc, InvalidInput) else "invalid_feedback"
        detail = exc.detail if isinstance(exc, InvalidInput) else str(exc)
        warn.warning("harvest: %s[%d]@%d rejected (%s): %s", message.topic, message.partition, message.offset,
                     reason, detail)
        sends.append(dead_letter(runtime, event.message, reason, detail, content_type))
        return

    model = runtime.store.get(candidates.model_id, message.partition).model
    label = metrics.model_label(candidates.model_id)

    # The message timestamp, not the wall clock, so a replayed candidate set gives identical records.
    # Kafka timestamps are whole milliseconds, the precision of the library's own created_at.
    created_at = datetime.fromtimestamp(message.timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")
    created_at = created_at.replace("+00:00", "Z")
    records = model.build_fine_tune_records(
        candidates.prompt,
        list(candidates.completions),
        candidates.source,
        policy=runtime.settings.policy,
        tags=candidates.tags,
        request_id=candidates.request_id,
        created_at=created_at,
    )
    metrics.candidates_scored.labels(label).inc(len(candidates.completions))
    for record in records:
        sends.append(publish_record(runtime, record))
        metrics.records_published.labels(label, record["kind"]).inc()
