"""``dynamic-rlhf model show``: print a stored model from the changelog topic or a checkpoint file."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from service.checkpoint import Checkpoint, CheckpointError, decode_checkpoint
from service.settings import Settings

logger = logging.getLogger(__name__)


async def read_latest_checkpoints(settings: Settings, timeout_s: float = 30.0) -> dict[str, bytes]:
    """Read the changelog topic to its end and return the latest checkpoint value per model id."""
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.max_model_bytes,
        fetch_max_bytes=max(settings.max_model_bytes, 52_428_800),
        request_timeout_ms=int(timeout_s * 1000),
        **settings.aiokafka_options(),
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # a consumer that failed to start still has a client to close
        raise
    try:
        partitions = await asyncio.wait_for(topic_partitions(settings, settings.changelog_topic), timeout_s)
        if not partitions:
            return {}
        tps = [TopicPartition(settings.changelog_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)

        latest: dict[str, bytes] = {}
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await asyncio.wait_for(consumer.getmany(*remaining, timeout_ms=1000), timeout_s)
            for tp, messages in batches.items():
                for message in messages:
                    if message.key is not None and message.value is not None:
                        latest[message.key.decode("utf-8")] = message.value
                    if message.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return latest
    finally:
        await consumer.stop()


async def topic_partitions(settings: Settings, topic: str) -> list[int]:
    """Return the partition numbers of `topic`, or an empty list when it does not exist."""
    admin = AIOKafkaAdminClient(**settings.aiokafka_options())
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []
        descriptions = await admin.describe_topics([topic])
        return sorted(int(p["partition"]) for p in descriptions[0]["partitions"])
    finally:
        await admin.close()


def load_checkpoint(settings: Settings, model_id: str, path: str | None, timeout_s: float) -> Checkpoint | None:
    """Return the checkpoint of `model_id` from `path`, or from the changelog topic when `path` is None."""
    if path is not None:
        return decode_checkpoint(Path(path).read_bytes())
    values = asyncio.run(read_latest_checkpoints(settings, timeout_s))
    value = values.get(model_id)
    return None if value is None else decode_checkpoint(value)


def format_checkpoint(checkpoint: Checkpoint, top: int) -> str:
    """Return a human-readable summary of a checkpoint."""
    model = checkpoint.load_model()
    stats = model.stats()
    lines = [
        f"partition: {checkpoint.partition}",
        f"applied offsets: {checkpoint.offsets}",
        f"checkpoint bytes: {len(checkpoint.model_bytes)}",
    ]
    for item in dataclasses.fields(stats):
        lines.append(f"{item.name}: {getattr(stats, item.name)}")
    lines.append(f"top {top} features by |weight|:")
    for name, weight in model.top_features(top):
        lines.append(f"  {weight:+.4f}  {name}")
    return "\n".join(lines)


def run_model_show(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``dynamic-rlhf model show``."""
    try:
        checkpoint = load_checkpoint(settings, args.model_id, args.checkpoint, args.timeout)
    except (OSError, CheckpointError) as exc:
        print(f"model show: cannot read the checkpoint: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(f"model show: cannot read the changelog from {settings.bootstrap_servers}: {exc!r}; "
              "check KAFKA_BOOTSTRAP_SERVERS and that the broker is running", file=sys.stderr)
        return 1
    if checkpoint is None:
        print(f"model show: no checkpoint of model {args.model_id!r} in topic {settings.changelog_topic}; "
              "check DRLHF_APP_ID and that a worker has processed events", file=sys.stderr)
        return 1

    print(format_checkpoint(checkpoint, args.top))
    if args.save:
        from service.checkpoint import encode_checkpoint

        target = Path(args.save)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(encode_checkpoint(checkpoint))
        except OSError as exc:
            print(f"model show: cannot write the checkpoint to {target}: {exc}", file=sys.stderr)
            return 1
        print(f"checkpoint written to {args.save}")
    return 0
