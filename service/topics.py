"""Kafka topics of the service, declared with the configured partition count.

Both input topics are keyed by model id and have the same partition count as the model
table, so Faust assigns partition N of each input and of the changelog to the same worker.
The worker that owns a model's state therefore also receives its events and candidate sets. Values
are read as raw bytes and decoded by `service.codecs`, so a malformed message becomes a
dead letter instead of a crash inside Faust's deserialiser.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import faust
from faust.types import TopicT

from service.settings import Settings


@dataclass(frozen=True)
class Topics:
    """The four topics of one app."""

    preferences: TopicT
    candidates: TopicT
    records: TopicT
    dead_letters: TopicT

    def outputs(self) -> tuple[TopicT, TopicT]:
        return (self.records, self.dead_letters)


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare the input and output topics on `app`; Faust creates them at start when missing."""

    def raw_topic(name: str) -> TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            replicas=settings.replication_factor,
        )

    return Topics(
        preferences=raw_topic(settings.topic_preferences),
        candidates=raw_topic(settings.topic_candidates),
        records=raw_topic(settings.topic_records),
        dead_letters=raw_topic(settings.topic_dead_letters),
    )


class TopicLayoutError(RuntimeError):
    """An existing topic has a partition count that breaks co-partitioning with the model table."""


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the input and output topics when missing; return the names created.

    Faust creates the changelog topic itself but not the topics its agents consume, and
    brokers often disable automatic topic creation. An existing input topic must have
    ``DRLHF_PARTITIONS`` partitions, or events of one model could reach a worker that
    does not own the model's state.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    options = settings.aiokafka_options()
    admin = AIOKafkaAdminClient(request_timeout_ms=int(timeout_s * 1000), **options)
    await admin.start()
    try:
        names = [settings.topic_preferences, settings.topic_candidates, settings.topic_records,
                 settings.topic_dead_letters]
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        created = []
        for name in missing:
            try:
                await admin.create_topics([NewTopic(name, settings.partitions, settings.replication_factor)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another worker created it first

        await _check_partitions(admin, settings, [settings.topic_preferences, settings.topic_candidates])
        return created
    finally:
        await admin.close()


async def _check_partitions(admin: object, settings: Settings, names: list[str], attempts: int = 20) -> None:
    for _ in range(attempts):
        descriptions = await admin.describe_topics(names)  # type: ignore[attr-defined]
        counts = {d["topic"]: len(d["partitions"]) for d in descriptions}
        # A topic created a moment ago can be described with no partitions until metadata propagates.
        if all(counts.get(name) for name in names):
            break
        await asyncio.sleep(0.25)

    for name in names:
        count = counts.get(name, 0)
        if count != settings.partitions:
            raise TopicLayoutError(
                f"topic {name} has {count} partitions but DRLHF_PARTITIONS={settings.partitions}; "
                "set DRLHF_PARTITIONS to the topic's partition count or use new topic names"
            )
