"""Helpers shared by the agents: the batch loop, output sends and rate-limited warnings."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from faust.types import EventT, FutureMessage, Message, StreamT

from service.dead_letters import build_dead_letter, encode_dead_letter
from service.runtime import Runtime

JSON_HEADERS = [("content-type", b"application/json")]
UNKNOWN_MODEL_ID = "unknown"


async def event_batches(runtime: Runtime, stream: StreamT, agent: str) -> AsyncIterator[list[EventT]]:
    """Yield the stream's micro-batches without acking them, and mark `agent` alive meanwhile."""
    settings = runtime.settings
    runtime.health.agent_up(agent)
    runtime.metrics.agent_alive.labels(agent).set(1)
    try:
        async for events in stream.noack_take(settings.batch_max_events, settings.batch_wait_ms / 1000):
            yield events
    finally:
        runtime.health.agent_down(agent)
        runtime.metrics.agent_alive.labels(agent).set(0)


def observe_delays(runtime: Runtime, agent: str, messages: Iterable[Message]) -> None:
    """Observe each message's delay from its Kafka timestamp (producer CreateTime by default) to now.

    The delay includes the producer's clock offset from this worker's clock.
    """
    delay = runtime.metrics.event_delay.labels(agent)
    now = time.time()
    for message in messages:
        delay.observe(max(0.0, now - message.timestamp))


class RateLimitedLog:
    """Log at most one warning per `interval_s`, then report how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last = float("-inf")
        self._suppressed = 0

    def warning(self, msg: str, *args: Any) -> None:
        self._log(logging.WARNING, msg, args, exc_info=False)

    def exception(self, msg: str, *args: Any) -> None:
        """Log at ERROR with the current traceback, within the same rate limit."""
        self._log(logging.ERROR, msg, args, exc_info=True)

    def _log(self, level: int, msg: str, args: tuple[Any, ...], *, exc_info: bool) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._suppressed += 1
            return
        if self._suppressed:
            self.logger.warning("%d similar messages suppressed in the last %.0f s", self._suppressed, self.interval_s)
            self._suppressed = 0
        self._last = now
        self.logger.log(level, msg, *args, exc_info=exc_info)


def model_key(message: Message) -> str:
    """Return the message key as a model id, for labels of events that could not be parsed."""
    key = message.key
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8") or UNKNOWN_MODEL_ID
        except UnicodeDecodeError:
            return UNKNOWN_MODEL_ID
    return UNKNOWN_MODEL_ID


def dead_letter(runtime: Runtime, message: Message, reason: str, detail: str,
                content_type: str | None) -> FutureMessage:
    """Send the original message with the rejection reason to the dead-letter topic."""
    letter = build_dead_letter(
        original=message.value if isinstance(message.value, bytes) else b"",
        reason=reason,
        detail=detail,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=int(message.timestamp * 1000),
        content_type=content_type,
    )
    runtime.metrics.dead_letters.labels(reason).inc()
    return runtime.topics.dead_letters.send_soon(
        key=message.key,
        value=encode_dead_letter(letter),
        headers=JSON_HEADERS,
    )


def publish_record(runtime: Runtime, record: dict[str, Any]) -> FutureMessage:
    """Send one fine-tune record, keyed by its record id."""
    return runtime.topics.records.send_soon(
        key=str(record["record_id"]).encode("utf-8"),
        value=json.dumps(record, ensure_ascii=False).encode("utf-8"),
        headers=JSON_HEADERS,
    )
