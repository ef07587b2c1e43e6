"""The model table: one checkpoint envelope per model id, stored in a compacted changelog."""

from __future__ import annotations

import faust
from faust.types import TableT

from service.settings import Settings

TABLE_NAME = "models"


def declare_model_table(app: faust.App, settings: Settings) -> TableT:
    """Declare the in-memory model table; Faust rebuilds it from the changelog on start.

    Values are raw bytes (see `service.checkpoint`). A model can be larger than Kafka's
    default 1 MiB message limit, so the changelog's ``max.message.bytes`` is raised to
    ``DRLHF_MAX_MODEL_BYTES``. Small segments let the broker compact old checkpoints away,
    which keeps recovery short.
    """
    return app.Table(
        TABLE_NAME,
        default=None,
        # bytes types select Faust's raw serializer for keys and values.
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        extra_topic_configs={
            "max.message.bytes": str(settings.max_model_bytes),
            "segment.bytes": str(settings.changelog_segment_bytes),
            "min.cleanable.dirty.ratio": "0.1",
        },
    )
