"""Checkpoint rounds: on the learn agent's count or interval, on a timer, and on revocation."""

from __future__ import annotations

import logging
import time

from faust.types import TP

from service.runtime import Runtime
from service.transport import set_flush_pending, set_resume_offsets

logger = logging.getLogger(__name__)


async def run_checkpoint(runtime: Runtime) -> None:
    """Write changed models, wait for the broker, ack the events they contain, and count it.

    A failed round crashes the worker: its events stay unacknowledged, so a restarted
    worker consumes them again from the last checkpoint.
    """
    started = time.perf_counter()
    try:
        written = await runtime.store.checkpoint()
    except Exception as exc:
        runtime.metrics.checkpoints.labels("failed").inc()
        logger.exception("Checkpoint failed; stopping the worker so it restarts from the last checkpoint")
        await runtime.app.crash(exc)
        return
    if written:
        runtime.metrics.checkpoints.labels("ok").inc()
        runtime.metrics.checkpoint_duration.observe(time.perf_counter() - started)


def register_checkpointing(runtime: Runtime) -> None:
    """Install the checkpoint timer and the rebalance hooks."""
    app = runtime.app
    settings = runtime.settings
    topics = {settings.topic_preferences, settings.topic_candidates}

    def observe_checkpoint(model_id: str, size: int) -> None:
        runtime.metrics.checkpoint_bytes.labels(runtime.metrics.model_label(model_id)).set(size)
        state = runtime.store.states.get(model_id)
        if state is not None:
            runtime.metrics.record_model_stats(model_id, state.model.stats())

    runtime.store.on_checkpoint = observe_checkpoint

    def resume_from_checkpoints(partitions: set[TP]) -> dict[TP, int]:
        # Called by the consumer after table recovery, so the table contains the latest checkpoints.
        resume = runtime.store.resume_offsets(settings.topic_preferences)
        return {tp: resume[tp.partition] for tp in partitions
                if tp.topic == settings.topic_preferences and tp.partition in resume}

    set_resume_offsets(app, resume_from_checkpoints)

    async def flush_pending() -> None:
        # Faust waits for pending acks at a revocation and at shutdown; a checkpoint round acks them.
        await run_checkpoint(runtime)

    set_flush_pending(app, flush_pending)

    @app.timer(settings.checkpoint_interval_ms / 1000 / 2, name=f"{settings.app_id}.checkpoint")
    async def checkpoint_timer() -> None:
        # Covers idle streams: the learn agent only checks the interval when a batch arrives.
        if runtime.store.checkpoint_due():
            await run_checkpoint(runtime)

    def forget_partitions(partitions: set[tuple[str, int]]) -> None:
        runtime.health.forget(partitions)
        for topic, partition in partitions:
            try:
                runtime.metrics.consumer_lag.remove(topic, str(partition))
            except KeyError:
                pass  # no lag was measured for it

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: object, revoked: set[TP], **kwargs: object) -> None:
        runtime.assignment_generation += 1
        # Faust waited for every taken event to be acked; a last round covers the remainder.
        await run_checkpoint(runtime)
        partitions = {tp.partition for tp in revoked if tp.topic == settings.topic_preferences}
        dropped = runtime.store.drop_partitions(partitions)
        forget_partitions({(tp.topic, tp.partition) for tp in revoked if tp.topic in topics})
        logger.info("Partitions revoked: %s; dropped models %s", sorted(map(str, revoked)), dropped)

    @app.on_partitions_assigned.connect
    async def on_assigned(app_: object, assigned: set[TP], **kwargs: object) -> None:
        runtime.assignment_generation += 1

        # A lag reading that ran between the revocation and this assignment could report
        # partitions of the old assignment, so clear every input partition not assigned now.
        owned = {(tp.topic, tp.partition) for tp in assigned}
        forget_partitions({(topic, partition) for topic in topics for partition in range(settings.partitions)} - owned)
        logger.info("Partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
