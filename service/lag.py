"""Consumer lag per input partition: the broker's high watermark minus the next offset to process."""

from __future__ import annotations

import logging

from faust.types import TP

from service.runtime import Runtime

logger = logging.getLogger(__name__)


async def measure_lag(runtime: Runtime) -> dict[TP, int]:
    """Measure lag of every assigned input partition, update the gauge and the watchdog."""
    settings = runtime.settings
    inputs = {settings.topic_preferences, settings.topic_candidates}
    consumer = runtime.app.consumer
    generation = runtime.assignment_generation
    assigned = [tp for tp in consumer.assignment() if tp.topic in inputs]
    if not assigned:
        return {}

    highwaters = await consumer.highwaters(*assigned)
    lags: dict[TP, int] = {}
    for tp in assigned:
        progress = runtime.health.progress.get((tp.topic, tp.partition))
        if progress is not None and progress.offset >= 0:
            next_offset = progress.offset + 1
        else:
            next_offset = await consumer.position(tp) or 0
        lag = max(0, int(highwaters.get(tp) or 0) - next_offset)

        # A rebalance during the awaits above makes this partition list stale: the revocation
        # removed the gauges and watchdog entries of partitions this worker may no longer own.
        if runtime.assignment_generation != generation:
            return lags
        lags[tp] = lag
        runtime.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
        runtime.health.set_lag(tp.topic, tp.partition, lag)
    return lags


def register_lag_monitor(runtime: Runtime) -> None:
    """Measure lag every ``DRLHF_LAG_INTERVAL_MS``."""

    @runtime.app.timer(runtime.settings.lag_interval_ms / 1000, name=f"{runtime.settings.app_id}.lag")
    async def lag_timer() -> None:
        try:
            await measure_lag(runtime)
        except Exception as exc:  # a broker hiccup must not stop the timer
            logger.warning("Consumer lag measurement failed: %r", exc)
